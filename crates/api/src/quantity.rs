//! Enough of Kubernetes' `Quantity` to compare two values (`1.5` vs `500m`, `2Gi` vs `1536Mi`),
//! which resource defaulting needs.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The value of a quantity in base units, or `None` if it is not a valid quantity.
pub fn value(quantity: &Quantity) -> Option<f64> {
    let text = quantity.0.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let power: i32 = exponent.strip_prefix(['e', 'E'])?.parse().ok()?;
            10f64.powi(power)
        }
    };
    Some(number * scale)
}

/// `a > b`; a quantity that does not parse is never greater.
pub fn greater(a: &Quantity, b: &Quantity) -> bool {
    matches!((value(a), value(b)), (Some(a), Some(b)) if a > b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_owned())
    }

    #[test]
    fn parses_decimal_binary_and_exponent_forms() {
        assert_eq!(value(&q("1.5")), Some(1.5));
        assert_eq!(value(&q("500m")), Some(0.5));
        assert_eq!(value(&q("2Gi")), Some(2.0 * 1024f64.powi(3)));
        assert_eq!(value(&q("1.5Gi")), Some(1.5 * 1024f64.powi(3)));
        assert_eq!(value(&q("3k")), Some(3000.0));
        assert_eq!(value(&q("1e3")), Some(1000.0));
        assert_eq!(value(&q("abc")), None);
        assert_eq!(value(&q("1Zi")), None);
    }

    #[test]
    fn compares_across_units() {
        assert!(greater(&q("2Gi"), &q("1536Mi")));
        assert!(!greater(&q("1536Mi"), &q("1.5Gi")));
        assert!(greater(&q("1.5"), &q("500m")));
        assert!(!greater(&q("junk"), &q("1")));
    }
}
