package controller

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/controller/page"
	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// images serves the catalog part of the client API.
type images struct {
	cat *catalog.Catalog
}

// ListImages implements ImageFarmService.ListImages. It pages by keyset
// over the catalog's order: name, creation time, digest.
func (s images) ListImages(ctx context.Context, req *imagefarmv1.ListImagesRequest) (*imagefarmv1.ListImagesResponse, error) {
	if err := checkImageName(req.GetName()); err != nil {
		return nil, err
	}
	if k := req.GetKind(); k != imagefarmv1.ImageKind_IMAGE_KIND_UNSPECIFIED {
		if err := checkEnums("kind", k); err != nil {
			return nil, err
		}
	}
	pr, err := page.Parse(int(req.GetPageSize()), req.GetPageToken(), checkImageKey)
	if err != nil {
		return nil, err
	}
	all, err := s.cat.List(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	var out []*imagefarmv1.Image
	for _, img := range all {
		if k := req.GetKind(); k == imagefarmv1.ImageKind_IMAGE_KIND_UNSPECIFIED || k == kindToProto(img.Manifest.Kind) {
			out = append(out, imageToProto(img))
		}
	}
	listed, next := page.Cut(out, pr, page.Ascending, imageKey)
	return &imagefarmv1.ListImagesResponse{Images: listed, NextPageToken: next}, nil
}

// imageKey is an image's place in catalog.List's order (name, creation
// time, digest) as a string that sorts the same way: a name holds no NUL
// and the time is zero-padded nanoseconds.
func imageKey(img *imagefarmv1.Image) string {
	return fmt.Sprintf("%s\x00%020d\x00%s", img.GetName(), img.GetCreateTime().AsTime().UnixNano(), img.GetDigest())
}

// checkImageKey refuses a page token's key that imageKey cannot have made,
// so a forged or mangled token is an error rather than a listing that
// starts somewhere.
func checkImageKey(k string) error {
	parts := strings.Split(k, "\x00")
	if len(parts) != 3 || len(parts[1]) != 20 || strings.Trim(parts[1], "0123456789") != "" {
		return errors.New("not an image listing's key")
	}
	if err := ident.ImageName(parts[0]); err != nil {
		return err
	}
	return ident.Digest(parts[2])
}

// GetImage implements ImageFarmService.GetImage.
func (s images) GetImage(ctx context.Context, req *imagefarmv1.GetImageRequest) (*imagefarmv1.GetImageResponse, error) {
	ref, err := parseRef(req.GetRef())
	if err != nil {
		return nil, err
	}
	m, digest, err := s.cat.Manifest(ctx, ref)
	if err != nil {
		return nil, err
	}
	img := catalog.Image{Name: ref.Name, Digest: digest, Manifest: m}
	if all, err := s.cat.List(ctx, ref.Name); err == nil {
		for _, i := range all {
			if i.Digest == digest {
				img = i
			}
		}
	}
	return &imagefarmv1.GetImageResponse{Image: imageToProto(img)}, nil
}

func kindToProto(k catalog.Kind) imagefarmv1.ImageKind {
	v, ok := imagefarmv1.ImageKind_value["IMAGE_KIND_"+strings.ToUpper(string(k))]
	if !ok {
		return imagefarmv1.ImageKind_IMAGE_KIND_UNSPECIFIED
	}
	return imagefarmv1.ImageKind(v)
}

func imageToProto(img catalog.Image) *imagefarmv1.Image {
	m := img.Manifest
	out := &imagefarmv1.Image{
		Name: img.Name, Version: img.Version, Digest: img.Digest, Kind: kindToProto(m.Kind),
		SizeBytes: uint64(m.Size), StoredBytes: uint64(m.StoredBytes()), ChunkCount: uint32(len(m.Chunks)),
		Models: m.Models, Labels: m.Labels, CreateTime: timestamppb.New(m.Created), Channels: img.Channels,
	}
	if w := m.WIM; w != nil {
		out.Wim = &imagefarmv1.WimInfo{PartNumber: uint32(w.Part), TotalParts: uint32(w.TotalParts), Guid: w.GUID}
		for _, im := range w.Images {
			build, sp := windowsBuild(im.Build)
			out.Wim.Images = append(out.Wim.Images, &imagefarmv1.WimImage{
				Index: uint32(im.Index), Name: im.Name, Edition: im.Edition, Build: build,
				ServicePackBuild: sp, Architecture: im.Arch, SizeBytes: uint64(im.TotalBytes),
			})
		}
	}
	return out
}

// windowsBuild takes BUILD and SPBUILD from "MAJOR.MINOR.BUILD.SPBUILD".
func windowsBuild(v string) (build, sp uint32) {
	parts := strings.Split(v, ".")
	if len(parts) == 4 {
		b, _ := strconv.ParseUint(parts[2], 10, 32)
		s, _ := strconv.ParseUint(parts[3], 10, 32)
		return uint32(b), uint32(s)
	}
	return 0, 0
}
