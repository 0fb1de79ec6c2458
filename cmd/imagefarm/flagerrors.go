package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// flagError turns pflag's message for a value a flag cannot take, which
// ends in the parser's own words ("invalid argument "-1" for "--limit"
// flag: strconv.ParseUint: parsing "-1": invalid syntax"), into what the
// flag wants: `--limit "-1": want a whole number from 0 to 4294967295`.
// An unknown flag or a flag without its value gets where to read the
// command's flags.
func flagError(cmd *cobra.Command, err error) error {
	var bad *pflag.InvalidValueError
	if errors.As(err, &bad) {
		why := bad.Unwrap().Error() // a flag's own check says what it wants
		if parserError(bad.Unwrap()) {
			why = "want " + flagWants(bad.GetFlag().Value.Type())
		}
		return fmt.Errorf("--%s %q: %s", bad.GetFlag().Name, bad.GetValue(), why)
	}
	return fmt.Errorf("%w (%s --help lists its flags)", err, cmd.CommandPath())
}

// parserError reports whether err is the words of strconv or time, which
// say how parsing failed rather than what the flag takes.
func parserError(err error) bool {
	var num *strconv.NumError
	return errors.As(err, &num) || strings.HasPrefix(err.Error(), "time: ")
}

// flagWants says what a flag of pflag type typ takes.
func flagWants(typ string) string {
	switch typ {
	case "uint32":
		return fmt.Sprintf("a whole number from 0 to %d", uint32(math.MaxUint32))
	case "uint", "uint64":
		return "a whole number, 0 or more"
	case "int", "int32", "int64":
		return "a whole number"
	case "bool":
		return "true or false"
	case "duration":
		return "a duration such as 90s, 5m or 1h30m"
	case "float32", "float64":
		return "a number"
	}
	return "a value of type " + typ
}
