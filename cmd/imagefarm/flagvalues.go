package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/pflag"
)

// bounded is a duration or count flag that refuses values below its
// least. The components' Configs read 0 as "the default", so a flag that
// passed a 0 through would mean its default where --help says the value
// is used as given; the flag refuses it instead, naming the default.
type bounded[T time.Duration | int | int64] struct {
	p     *T
	def   T
	least T
	parse func(string) (T, error)
	kind  string
}

func (b *bounded[T]) String() string {
	if b.p == nil {
		return ""
	}
	return format(*b.p)
}

func (b *bounded[T]) Set(s string) error {
	v, err := b.parse(s)
	if err != nil {
		return err
	}
	if v < b.least {
		if b.least == 1 {
			return fmt.Errorf("want more than 0, such as %s (the default)", format(b.def))
		}
		return fmt.Errorf("want %s or more, such as %s (the default)", format(b.least), format(b.def))
	}
	*b.p = v
	return nil
}

func (b *bounded[T]) Type() string { return b.kind }

func format[T time.Duration | int | int64](v T) string {
	if d, ok := any(v).(time.Duration); ok {
		return d.String()
	}
	return strconv.FormatInt(int64(v), 10)
}

// durationVar adds a duration flag that refuses values under least
// (1ns: only positive ones; 0: 0 too, for a flag whose 0 means "never").
func durationVar(fl *pflag.FlagSet, p *time.Duration, name string, def, least time.Duration, usage string) {
	*p = def
	fl.Var(&bounded[time.Duration]{p: p, def: def, least: least, parse: time.ParseDuration, kind: "duration"}, name, usage)
}

// positiveIntVar adds an int flag that refuses 0 and less.
func positiveIntVar(fl *pflag.FlagSet, p *int, name string, def int, usage string) {
	*p = def
	parse := func(s string) (int, error) {
		v, err := strconv.ParseInt(s, 0, strconv.IntSize)
		return int(v), err
	}
	fl.Var(&bounded[int]{p: p, def: def, least: 1, parse: parse, kind: "int"}, name, usage)
}

// positiveInt64Var adds an int64 flag that refuses 0 and less.
func positiveInt64Var(fl *pflag.FlagSet, p *int64, name string, def int64, usage string) {
	*p = def
	parse := func(s string) (int64, error) { return strconv.ParseInt(s, 0, 64) }
	fl.Var(&bounded[int64]{p: p, def: def, least: 1, parse: parse, kind: "int"}, name, usage)
}
