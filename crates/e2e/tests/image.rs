//! The operator image that `hack/cluster/images` writes without Docker: reproducible (the same
//! binary gives the same digest), and the same image as the Dockerfile describes for people with
//! Docker (binary path, user, entrypoint, command, ports). Needs `target/debug/mssql-operator`
//! (or `$MSSQL_OPERATOR_BIN`); no plane.

use std::path::Path;
use std::process::Command;

use mssql_e2e::operator::binary;
use mssql_e2e::root;
use serde_json::{Value, json};

/// Writes the operator image into `out`; returns its manifest digest.
fn build_image(out: &Path) -> String {
    let output = Command::new(root().join("hack/cluster/images"))
        .args(["--out", out.to_str().unwrap(), "operator"])
        .env("MSSQL_OPERATOR_BIN", binary())
        .output()
        .expect("hack/cluster/images runs");
    assert!(
        output.status.success(),
        "hack/cluster/images failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = String::from_utf8(output.stdout).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[..2], ["operator", "localhost/mssql-operator:0.1.0"]);
    words[2].to_owned()
}

/// A file of the OCI archive.
fn member(archive: &Path, name: &str) -> Vec<u8> {
    let output = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(name)
        .output()
        .expect("tar runs");
    assert!(output.status.success(), "{name} is in {archive:?}");
    output.stdout
}

fn blob(archive: &Path, digest: &str) -> Vec<u8> {
    member(
        archive,
        &format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
    )
}

/// The final stage of the Dockerfile: `INSTRUCTION -> arguments`, and the COPY destinations.
fn dockerfile_image() -> (Value, Vec<String>) {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let last_stage = text.rsplit("\nFROM ").next().unwrap();
    let mut config = json!({});
    let mut copied = Vec::new();
    for line in last_stage.lines() {
        let Some((instruction, arguments)) = line.split_once(' ') else {
            continue;
        };
        match instruction {
            "USER" => config["User"] = json!(arguments),
            "EXPOSE" => config["ExposedPorts"] = json!({format!("{arguments}/tcp"): {}}),
            "ENTRYPOINT" => config["Entrypoint"] = serde_json::from_str(arguments).unwrap(),
            "CMD" => config["Cmd"] = serde_json::from_str(arguments).unwrap(),
            "COPY" => copied.push(arguments.rsplit(' ').next().unwrap().to_owned()),
            _ => {}
        }
    }
    (config, copied)
}

#[test]
fn the_operator_image_is_reproducible_and_is_the_dockerfiles() {
    let dir = std::env::temp_dir().join(format!("mssql-image-test-{}", std::process::id()));
    let (first, second) = (dir.join("a"), dir.join("b"));
    let digest = build_image(&first);
    assert_eq!(
        build_image(&second),
        digest,
        "the same binary, the same image"
    );
    let archive = first.join("operator.oci.tar");
    assert_eq!(
        member(&archive, "index.json"),
        member(&second.join("operator.oci.tar"), "index.json")
    );

    let manifest: Value = serde_json::from_slice(&blob(&archive, &digest)).unwrap();
    let config: Value = serde_json::from_slice(&blob(
        &archive,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    let (dockerfile, copied) = dockerfile_image();
    for key in ["User", "ExposedPorts", "Entrypoint", "Cmd"] {
        assert_eq!(
            config["config"][key], dockerfile[key],
            "{key}: the script's image and the Dockerfile's differ"
        );
    }
    assert_eq!(copied, ["/usr/local/bin/mssql-operator"]);

    // The binary is where both put it, executable, owned by root; the user exists.
    let layer = dir.join("layer.tar.gz");
    std::fs::write(
        &layer,
        blob(&archive, manifest["layers"][0]["digest"].as_str().unwrap()),
    )
    .unwrap();
    let listing = Command::new("tar")
        .arg("-tzvf")
        .arg(&layer)
        .output()
        .expect("tar runs");
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(
        listing.lines().any(
            |l| l.starts_with("-rwxr-xr-x 0/0") && l.ends_with(" usr/local/bin/mssql-operator")
        ),
        "{listing}"
    );
    let layer_passwd = Command::new("tar")
        .arg("-xzOf")
        .arg(&layer)
        .arg("etc/passwd")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&layer_passwd.stdout).contains(":65532:65532:"));
    std::fs::remove_dir_all(&dir).unwrap();
}
