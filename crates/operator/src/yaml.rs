//! YAML output for people and for `kubectl apply -f -`.

/// `objects` as one multi-document YAML stream.
pub fn documents<T: serde::Serialize>(
    objects: &[T],
) -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(object)?);
    }
    Ok(out)
}
