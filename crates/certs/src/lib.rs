//! Certificates: the cert-manager API subset the operator uses, and inspection of the TLS
//! Secrets cert-manager writes. Certificate planning (aliases, names, SANs) joins them as the
//! provisioner needs it.

pub mod cert_manager;
pub mod inspect;
pub mod served;

#[cfg(test)]
mod test_pki;
