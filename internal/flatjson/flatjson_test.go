package flatjson

import (
	"encoding/json"
	"testing"
)

func TestObjectMembers(t *testing.T) {
	var got []string
	ok := Object([]byte(" {\"a\" : \"x\", \"b\":12,\"c\":{\"d\":[1,\"}\"]}, \"e\":true}\n"), func(k, v []byte) bool {
		got = append(got, string(k)+"="+string(v))
		return true
	})
	want := []string{`a="x"`, `b=12`, `c={"d":[1,"}"]}`, `e=true`}
	if !ok || len(got) != len(want) {
		t.Fatalf("Object = %v, members %q", ok, got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("member %d = %q, want %q", i, got[i], want[i])
		}
	}
	for _, bad := range []string{``, `[]`, `{`, `{"a":1,}`, `{"a":1} x`, `{"a\u0062":1}`, `{"a" 1}`, `{"a":}`, `{"a":"x}`} {
		if Object([]byte(bad), func(k, v []byte) bool { return true }) {
			t.Errorf("Object accepted %q", bad)
		}
	}
}

func TestScalars(t *testing.T) {
	for v, want := range map[string]bool{`"abc"`: true, `"日本"`: true, `"a\"b"`: false, "\"a\tb\"": false, `"a`: false, `"a"b`: false, "\"\xff\"": false} {
		if _, ok := String([]byte(v)); ok != want {
			t.Errorf("String(%s) ok = %v, want %v", v, ok, want)
		}
	}
	for v, want := range map[string]int64{`0`: 0, `1796168705`: 1796168705, `999999999999999`: 999999999999999} {
		if n, ok := Int([]byte(v)); !ok || n != want {
			t.Errorf("Int(%s) = %d, %v", v, n, ok)
		}
	}
	for _, v := range []string{``, `-1`, `01`, `1.5`, `1e3`, `1000000000000000`, `"1"`} {
		if _, ok := Int([]byte(v)); ok {
			t.Errorf("Int(%s) accepted", v)
		}
	}
	for _, s := range []string{"", "plain text 123", "a<b", "é", "q\"", "tab\t"} {
		want, _ := json.Marshal(s)
		if b := AppendString([]byte("x"), s); string(b) != "x"+string(want) {
			t.Errorf("AppendString(%q) = %s, encoding/json %s", s, b, want)
		}
	}
}
