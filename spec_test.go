package pushd_test

import (
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pushd/pushd"
)

// TestOpenAPIIsValid validates openapi.yaml against the OpenAPI 3.1 schema
// and builds its model (every $ref resolved), so a YAML slip that parses
// into a different document than the one meant is caught.
func TestOpenAPIIsValid(t *testing.T) {
	doc, err := libopenapi.NewDocument(pushd.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if v := doc.GetVersion(); v != "3.1.0" {
		t.Fatalf("openapi %s, want 3.1.0", v)
	}
	v, errs := validator.NewValidator(doc)
	for _, err := range errs {
		t.Errorf("building the validator: %v", err)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("%s", e.Error())
			for _, se := range e.SchemaValidationErrors {
				t.Errorf("  at %s (line %d): %s", se.FieldPath, se.Line, se.Reason)
			}
		}
	}
	if _, err := doc.BuildV3Model(); err != nil {
		t.Errorf("building the model: %v", err)
	}
}
