//! Schema helpers for fields whose shape belongs to other projects (KubeDB's init, archiver,
//! monitor…): the API server must keep them as they are, and a structural schema needs a type.

use schemars::{Schema, SchemaGenerator, json_schema};

/// An object whose content the API server keeps unchecked (`x-kubernetes-preserve-unknown-fields`).
pub fn preserved_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A map of string to string (labels, annotations, inline config).
pub fn string_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": { "type": "string" },
    })
}

/// Turns a struct schema that carries a `#[serde(flatten)]` map of extra fields into a structural
/// one: Kubernetes forbids `properties` beside `additionalProperties`, so the extras are kept with
/// `x-kubernetes-preserve-unknown-fields` instead.
pub fn preserve_unknown_fields(schema: &mut Schema) {
    schema.remove("additionalProperties");
    schema.insert("x-kubernetes-preserve-unknown-fields".into(), true.into());
}

/// A list of objects whose content the API server keeps unchecked.
pub fn preserved_objects(generator: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": preserved_object(generator),
    })
}
