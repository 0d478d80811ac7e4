package atr

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestZZDemo(t *testing.T) {
	for _, s := range strings.Split(os.Getenv("ATRS"), ",") {
		if s == "" {
			continue
		}
		a, err := ParseHex(s)
		fmt.Println("err:", err)
		if a != nil {
			fmt.Println(a)
			j, _ := json.Marshal(a)
			fmt.Println(string(j))
		}
		fmt.Println()
	}
}
