//! The default `MSSQLServerVersion` catalog: the names KubeDB ships, each mapped to Microsoft's
//! official SQL Server image. This operator runs its init step from the server image itself, so
//! no KubeDB helper image (coordinator, init, exporter) is needed or listed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::version::{Image, UpdateConstraints, VersionSecurityContext};
use crate::{DEFAULT_RUN_AS_USER, MssqlServerVersion, MssqlServerVersionSpec};

/// `(catalog name, SQL Server version, image tag, allowed update range)`.
const RELEASES: [(&str, &str, &str, &str); 6] = [
    (
        "2022-cu12",
        "2022",
        "2022-CU12-ubuntu-22.04",
        ">= 2022-cu12, <= 2022-cu22",
    ),
    (
        "2022-cu14",
        "2022",
        "2022-CU14-ubuntu-22.04",
        ">= 2022-cu14, <= 2022-cu22",
    ),
    (
        "2022-cu16",
        "2022",
        "2022-CU16-ubuntu-22.04",
        ">= 2022-cu16, <= 2022-cu22",
    ),
    (
        "2022-cu19",
        "2022",
        "2022-CU19-ubuntu-22.04",
        ">= 2022-cu19, <= 2022-cu22",
    ),
    (
        "2022-cu22",
        "2022",
        "2022-CU22-ubuntu-22.04",
        ">= 2022-cu22, <= 2022-cu22",
    ),
    (
        "2025-cu0",
        "2025",
        "2025-RTM-ubuntu-22.04",
        ">= 2025-cu0, < 2025-cu1",
    ),
];

pub const SERVER_IMAGE: &str = "mcr.microsoft.com/mssql/server";

/// The built-in catalog, oldest first.
pub fn default_catalog() -> Vec<MssqlServerVersion> {
    RELEASES
        .iter()
        .map(|(name, version, tag, allowed)| {
            let image = Image {
                image: format!("{SERVER_IMAGE}:{tag}"),
            };
            MssqlServerVersion {
                metadata: ObjectMeta {
                    name: Some((*name).to_owned()),
                    ..ObjectMeta::default()
                },
                spec: MssqlServerVersionSpec {
                    version: (*version).to_owned(),
                    db: image.clone(),
                    init_container: Some(image),
                    security_context: Some(VersionSecurityContext {
                        run_as_user: Some(DEFAULT_RUN_AS_USER),
                    }),
                    update_constraints: Some(UpdateConstraints {
                        allowlist: Some(vec![(*allowed).to_owned()]),
                        denylist: None,
                    }),
                    ..MssqlServerVersionSpec::default()
                },
            }
        })
        .collect()
}

/// The catalog entry called `name`, if any.
pub fn find<'a>(catalog: &'a [MssqlServerVersion], name: &str) -> Option<&'a MssqlServerVersion> {
    catalog
        .iter()
        .find(|v| v.metadata.name.as_deref() == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ships_kubedbs_names_with_microsoft_images() {
        let catalog = default_catalog();
        let names: Vec<_> = catalog
            .iter()
            .filter_map(|v| v.metadata.name.as_deref())
            .collect();
        assert_eq!(
            names,
            [
                "2022-cu12",
                "2022-cu14",
                "2022-cu16",
                "2022-cu19",
                "2022-cu22",
                "2025-cu0"
            ]
        );
        let v = find(&catalog, "2025-cu0").unwrap();
        assert_eq!(
            v.spec.db.image,
            "mcr.microsoft.com/mssql/server:2025-RTM-ubuntu-22.04"
        );
        assert_eq!(v.run_as_user(), 10001);
        assert!(catalog.iter().all(|v| {
            v.spec
                .db
                .image
                .starts_with("mcr.microsoft.com/mssql/server:")
        }));
        assert!(find(&catalog, "2019-cu1").is_none());
    }
}
