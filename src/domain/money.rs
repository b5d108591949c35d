//! Money: integer minor units plus an ISO 4217 currency; shown to clients as a decimal string.

use std::fmt;

/// An ISO 4217 currency this shop can price in.
///
/// Only currencies with two minor digits are accepted, so a decimal price such as a `minPrice`
/// filter converts to minor units the same way for every product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

const SUPPORTED: &[&str] = &["USD", "EUR", "GBP", "CAD", "AUD", "CHF", "SEK", "NZD"];

impl Currency {
    /// US dollars, the demo catalog's currency.
    pub const USD: Currency = Currency(*b"USD");
    /// Digits after the decimal point.
    pub const EXPONENT: u32 = 2;

    /// Parses a supported ISO 4217 code (upper case).
    pub fn parse(code: &str) -> Result<Self, String> {
        if SUPPORTED.contains(&code) {
            let b = code.as_bytes();
            Ok(Currency([b[0], b[1], b[2]]))
        } else {
            Err(format!("unsupported currency `{code}`; supported: {}", SUPPORTED.join(", ")))
        }
    }

    /// The three-letter code.
    pub fn code(&self) -> &str {
        // The bytes came from one of the ASCII codes in SUPPORTED.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Formats minor units as a decimal string with two digits.
pub fn format_minor(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Parses a non-negative decimal amount (`"19.99"`, `"20"`, `"0.5"`) into minor units.
/// More than two decimals, signs, exponents and amounts above 10^15 are refused.
pub fn parse_decimal(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let bad = || format!("`{text}` is not a decimal amount like \"19.99\"");
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if whole.is_empty() || whole.len() > 15 || frac.len() > 2 {
        return Err(bad());
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let frac: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<2}").parse().map_err(|_| bad())? };
    Ok(whole * 100 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_minor_units() {
        assert_eq!(format_minor(1999), "19.99");
        assert_eq!(format_minor(5), "0.05");
        assert_eq!(format_minor(0), "0.00");
        assert_eq!(format_minor(-50), "-0.50");
        assert_eq!(format_minor(100_000), "1000.00");
    }

    #[test]
    fn parses_decimals_exactly() {
        assert_eq!(parse_decimal("19.99"), Ok(1999));
        assert_eq!(parse_decimal("20"), Ok(2000));
        assert_eq!(parse_decimal("0.5"), Ok(50));
        for bad in ["", "-1", "1.999", "1e3", "abc", ".5", "1.2.3", "9999999999999999"] {
            assert!(parse_decimal(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn currencies_are_checked() {
        assert_eq!(Currency::parse("EUR").unwrap().code(), "EUR");
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("JPY").is_err());
    }
}
