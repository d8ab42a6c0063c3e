//! Certificates: the cert-manager API subset the operator uses. Certificate planning (aliases,
//! names, SANs) and PEM inspection join it as the provisioner and ops-manager need them.

pub mod cert_manager;
