//! Order rules: the status machine, cart quantities, shipping addresses.

/// Where an order is in its life.
// Cancelling restores the stock and refunds a paid order; refunding follows fulfilment.
// The GraphQL enum is derived here, as for `auth::Role`, so the variants and what clients read
// about them are written once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, async_graphql::Enum)]
#[graphql(name = "OrderStatus")]
pub enum OrderStatus {
    /// Placed, not yet paid.
    Pending,
    /// Paid, awaiting fulfilment.
    Paid,
    /// Shipped.
    Fulfilled,
    /// Cancelled before fulfilment.
    Cancelled,
    /// Money returned.
    Refunded,
}

impl OrderStatus {
    /// The status stored as `text`; an unknown spelling reads as `Pending`.
    pub fn stored(text: &str) -> Self {
        Self::parse(text).unwrap_or(Self::Pending)
    }

    /// Whether an order in this status holds its units for the customer (counted in
    /// `Inventory.reserved`): placed or paid, not yet fulfilled, cancelled or refunded.
    pub fn holds_stock(self) -> bool {
        matches!(self, Self::Pending | Self::Paid)
    }

    /// The stored value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Paid => "PAID",
            Self::Fulfilled => "FULFILLED",
            Self::Cancelled => "CANCELLED",
            Self::Refunded => "REFUNDED",
        }
    }

    /// Parses the stored value.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "PENDING" => Self::Pending,
            "PAID" => Self::Paid,
            "FULFILLED" => Self::Fulfilled,
            "CANCELLED" => Self::Cancelled,
            "REFUNDED" => Self::Refunded,
            _ => return None,
        })
    }

    /// The only legal moves:
    /// `PENDING → PAID | CANCELLED`, `PAID → FULFILLED | CANCELLED | REFUNDED`, `FULFILLED → REFUNDED`.
    pub fn can_become(self, next: Self) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Pending, Paid)
                | (Pending, Cancelled)
                | (Paid, Fulfilled)
                | (Paid, Cancelled)
                | (Paid, Refunded)
                | (Fulfilled, Refunded)
        )
    }
}

/// Units of one product in a cart line: 1 to 999.
pub fn check_quantity(quantity: i64) -> Result<i64, String> {
    if (1..=999).contains(&quantity) {
        Ok(quantity)
    } else {
        Err(format!("quantity must be between 1 and 999 (got {quantity})"))
    }
}

/// A shipping address.
// As the client gave it; `ShippingAddress::parse` checks it. It is also GraphQL's
// `ShippingAddressInput`, so its fields and what clients read about them are written once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, async_graphql::InputObject)]
#[graphql(name = "ShippingAddressInput")]
pub struct AddressFields {
    /// Recipient.
    pub name: String,
    /// Street and number.
    pub line1: String,
    /// Flat, floor, ...
    pub line2: Option<String>,
    /// City.
    pub city: String,
    /// State, province or region.
    pub region: Option<String>,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code, e.g. `FR`.
    pub country: String,
}

/// A validated shipping address: trimmed, each field within its length, a real country code.
/// It serialises exactly as its fields (the checkout request hash is made of it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct ShippingAddress(AddressFields);

/// ISO 3166-1 alpha-2 codes, officially assigned.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS \
BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM \
FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP \
KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV \
MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD \
SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC \
VE VG VI VN VU WF WS YE YT ZA ZM ZW";

impl ShippingAddress {
    /// Trims and checks every field; the error names the field (as the client spells it).
    pub fn parse(raw: &AddressFields) -> Result<Self, (&'static str, String)> {
        fn required(field: &'static str, value: &str, max: usize) -> Result<String, (&'static str, String)> {
            let v = value.trim();
            if v.is_empty() {
                Err((field, format!("{field} is required")))
            } else if v.chars().count() > max {
                Err((field, format!("{field} may be at most {max} characters")))
            } else {
                Ok(v.to_string())
            }
        }
        fn optional(
            field: &'static str,
            value: Option<&str>,
            max: usize,
        ) -> Result<Option<String>, (&'static str, String)> {
            match value.map(str::trim).filter(|v| !v.is_empty()) {
                Some(v) => required(field, v, max).map(Some),
                None => Ok(None),
            }
        }
        let country = raw.country.trim().to_ascii_uppercase();
        if country.len() != 2 || !COUNTRIES.split(' ').any(|c| c == country) {
            return Err(("country", format!("`{country}` is not an ISO 3166-1 alpha-2 country code")));
        }
        Ok(Self(AddressFields {
            name: required("name", &raw.name, 200)?,
            line1: required("line1", &raw.line1, 200)?,
            line2: optional("line2", raw.line2.as_deref(), 200)?,
            city: required("city", &raw.city, 100)?,
            region: optional("region", raw.region.as_deref(), 100)?,
            postal_code: required("postalCode", &raw.postal_code, 20)?,
            country,
        }))
    }

    /// The checked fields.
    pub fn fields(&self) -> &AddressFields {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;

    #[test]
    fn only_legal_transitions() {
        let all = [Pending, Paid, Fulfilled, Cancelled, Refunded];
        let legal: Vec<_> =
            all.iter().flat_map(|a| all.iter().map(move |b| (*a, *b))).filter(|(a, b)| a.can_become(*b)).collect();
        assert_eq!(
            legal,
            vec![
                (Pending, Paid),
                (Pending, Cancelled),
                (Paid, Fulfilled),
                (Paid, Cancelled),
                (Paid, Refunded),
                (Fulfilled, Refunded)
            ]
        );
        for s in all {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn quantities_and_addresses() {
        assert!(check_quantity(0).is_err() && check_quantity(1000).is_err() && check_quantity(999).is_ok());
        let raw = |name: &str, line1: &str, region: Option<&str>, country: &str| AddressFields {
            name: name.into(),
            line1: line1.into(),
            line2: None,
            city: "Lyon".into(),
            region: region.map(Into::into),
            postal_code: "69001".into(),
            country: country.into(),
        };
        let ok = ShippingAddress::parse(&raw(" Ann ", "1 Main St", Some(""), "fr")).unwrap();
        let f = ok.fields();
        assert_eq!((f.name.as_str(), f.country.as_str(), f.region.as_ref()), ("Ann", "FR", None));
        assert_eq!(ShippingAddress::parse(&raw("A", "1", None, "XX")).unwrap_err().0, "country");
        assert_eq!(ShippingAddress::parse(&raw("A", " ", None, "US")).unwrap_err().0, "line1");
    }
}
