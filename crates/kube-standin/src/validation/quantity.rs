//! Resource quantities (`1Gi`, `500Mi`, `250m`, `1e3`), compared by value as the API server
//! compares them (`1Gi` == `1024Mi`).

use std::cmp::Ordering;

/// A quantity in billionths of a unit (enough for `Ei` and `n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i128);

const NANO: i128 = 1_000_000_000;

impl Quantity {
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        let (sign, rest) = match s.as_bytes()[0] {
            b'-' => (-1, &s[1..]),
            b'+' => (1, &s[1..]),
            _ => (1, s),
        };
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        // The number in nano units before the suffix multiplier, kept exact as a fraction
        // (digits / 10^frac_len).
        let digits: i128 = format!("{int_part}{frac_part}").parse().ok()?;
        let frac_len = frac_part.len() as u32;
        let (mult_num, mult_den): (i128, i128) = match suffix {
            "" => (1, 1),
            "Ki" => (1 << 10, 1),
            "Mi" => (1 << 20, 1),
            "Gi" => (1 << 30, 1),
            "Ti" => (1 << 40, 1),
            "Pi" => (1 << 50, 1),
            "Ei" => (1 << 60, 1),
            "n" => (1, 1_000_000_000),
            "u" => (1, 1_000_000),
            "m" => (1, 1_000),
            "k" => (1_000, 1),
            "M" => (1_000_000, 1),
            "G" => (1_000_000_000, 1),
            "T" => (1_000_000_000_000, 1),
            "P" => (1_000_000_000_000_000, 1),
            "E" => (1_000_000_000_000_000_000, 1),
            exp if exp.starts_with(['e', 'E']) => {
                let e: i32 = exp[1..].parse().ok()?;
                if e.abs() > 18 {
                    return None;
                }
                if e >= 0 {
                    (10i128.pow(e as u32), 1)
                } else {
                    (1, 10i128.pow((-e) as u32))
                }
            }
            _ => return None,
        };
        let num = digits.checked_mul(mult_num)?.checked_mul(NANO)?;
        let den = 10i128.checked_pow(frac_len)?.checked_mul(mult_den)?;
        // Round up to the nearest nano, as the API server rounds up fractional values.
        let value = (num + den - 1) / den;
        Some(Quantity(sign * value))
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }
}

/// Compares two quantity strings; unparsable ones compare as equal only to themselves.
pub fn cmp_str(a: &str, b: &str) -> Option<Ordering> {
    Some(Quantity::parse(a)?.cmp(&Quantity::parse(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_compare_by_value() {
        assert_eq!(Quantity::parse("1Gi"), Quantity::parse("1024Mi"));
        assert!(Quantity::parse("2Gi") > Quantity::parse("1Gi"));
        assert!(Quantity::parse("500m") < Quantity::parse("1"));
        assert_eq!(Quantity::parse("1.5Gi"), Quantity::parse("1536Mi"));
        assert_eq!(Quantity::parse("1e3"), Quantity::parse("1k"));
        assert_eq!(cmp_str("1Gi", "1G"), Some(Ordering::Greater));
        assert!(Quantity::parse("abc").is_none());
        assert!(Quantity::parse("1Xi").is_none());
        assert!(!Quantity::parse("0").unwrap().is_positive());
    }
}
