package controller

import (
	"testing"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// TestPolicyCoversEveryMethod: a method added to a service without an
// access policy would be refused to everyone; this names it first.
func TestPolicyCoversEveryMethod(t *testing.T) {
	for _, sd := range []grpc.ServiceDesc{imagefarmv1.ImageFarmService_ServiceDesc, imagefarmv1.ImagerService_ServiceDesc,
		imagefarmv1.DeviceService_ServiceDesc, healthpb.Health_ServiceDesc, reflectionpb.ServerReflection_ServiceDesc} {
		var names []string
		for _, m := range sd.Methods {
			names = append(names, m.MethodName)
		}
		for _, s := range sd.Streams {
			names = append(names, s.StreamName)
		}
		for _, n := range names {
			if _, ok := policy["/"+sd.ServiceName+"/"+n]; !ok {
				t.Errorf("policy has no entry for %s.%s", sd.ServiceName, n)
			}
		}
	}
}
