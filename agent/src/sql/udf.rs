//! The scalar functions `sql` adds to the engine: the store's column forms of addresses and
//! MACs as text (`ip_text`, `mac_text`, which the `flows` view applies) and back
//! (`ip_column`, `mac_column`, for fast filters on `flows_raw`: a constant the engine folds
//! and compares with the row-group statistics). Conversions go through the store's own
//! codecs (`store::address`, `record::Mac`).

use std::any::Any;
use std::net::IpAddr;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryArray, FixedSizeBinaryBuilder, StringBuilder,
};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::record::Mac;
use crate::store::address::{ip_from_column, ip_to_column};

/// Bytes of an address in the store's column form.
const IP_LEN: i32 = 16;
/// Bytes of a MAC.
const MAC_LEN: i32 = 6;
/// The first 12 bytes of an IPv4 address in column form (`::ffff:0:0/96`).
const V4_MAPPED: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/// Which conversion a function does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    /// 16 bytes to `192.0.2.1` (IPv4-mapped) or IPv6 text.
    IpText,
    /// 6 bytes to `aa:bb:cc:dd:ee:ff`.
    MacText,
    /// Address text to its 16 bytes (IPv4 mapped into `::ffff:0:0/96`).
    IpColumn,
    /// MAC text to its 6 bytes.
    MacColumn,
}

/// One of the four conversions as an engine function.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Convert {
    kind: Kind,
    signature: Signature,
}

/// The functions, to register with the engine.
pub fn functions() -> Vec<ScalarUDF> {
    [
        (Kind::IpText, DataType::FixedSizeBinary(IP_LEN)),
        (Kind::MacText, DataType::FixedSizeBinary(MAC_LEN)),
        (Kind::IpColumn, DataType::Utf8),
        (Kind::MacColumn, DataType::Utf8),
    ]
    .into_iter()
    .map(|(kind, arg)| {
        ScalarUDF::from(Convert {
            kind,
            signature: Signature::uniform(1, vec![arg], Volatility::Immutable),
        })
    })
    .collect()
}

impl ScalarUDFImpl for Convert {
    fn name(&self) -> &str {
        match self.kind {
            Kind::IpText => "ip_text",
            Kind::MacText => "mac_text",
            Kind::IpColumn => "ip_column",
            Kind::MacColumn => "mac_column",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            Kind::IpText | Kind::MacText => DataType::Utf8,
            Kind::IpColumn => DataType::FixedSizeBinary(IP_LEN),
            Kind::MacColumn => DataType::FixedSizeBinary(MAC_LEN),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [input] = arrays.as_slice() else {
            return exec_err!("{} takes one argument, got {}", self.name(), arrays.len());
        };
        let out = match self.kind {
            Kind::IpText => to_text(input, IP_LEN, |b| Some(ip_text(b.try_into().ok()?))),
            Kind::MacText => to_text(input, MAC_LEN, |b| {
                Some(Mac(b.try_into().ok()?).to_string())
            }),
            Kind::IpColumn => to_column(input, IP_LEN, self.name(), |s| {
                s.parse::<IpAddr>().ok().map(|ip| ip_to_column(ip).to_vec())
            }),
            Kind::MacColumn => to_column(input, MAC_LEN, self.name(), |s| {
                s.parse::<Mac>().ok().map(|m| m.0.to_vec())
            }),
        }?;
        Ok(ColumnarValue::Array(out))
    }
}

/// The column form of `text` as a constant, if `func` is `ip_text` or `mac_text` and `text`
/// is what it gives for that value (so `func(x) = text` holds exactly when `x = value`).
pub fn canonical_column(func: &ScalarUDF, text: &str) -> Option<ScalarValue> {
    let inner: &dyn Any = func.inner().as_ref();
    let (bytes, len) = match inner.downcast_ref::<Convert>()?.kind {
        Kind::IpText => {
            let a = ip_to_column(text.parse::<IpAddr>().ok()?);
            (ip_text(a) == text).then_some((a.to_vec(), IP_LEN))?
        }
        Kind::MacText => {
            let m = text.parse::<Mac>().ok()?;
            (m.to_string() == text).then_some((m.0.to_vec(), MAC_LEN))?
        }
        Kind::IpColumn | Kind::MacColumn => return None,
    };
    Some(ScalarValue::FixedSizeBinary(len, Some(bytes)))
}

/// How `func` (`ip_text` or `mac_text`) writes the value `text` names, when `text` names one
/// but is spelled otherwise (`2001:DB8::1`, `::ffff:10.0.0.1`, `3C:22:FB:00:00:2A`): a text
/// comparison with it matches no row, which the user is told.
pub fn other_spelling(func: &ScalarUDF, text: &str) -> Option<String> {
    let inner: &dyn Any = func.inner().as_ref();
    let canonical = match inner.downcast_ref::<Convert>()?.kind {
        Kind::IpText => ip_text(ip_to_column(text.parse::<IpAddr>().ok()?)),
        Kind::MacText => text.parse::<Mac>().ok()?.to_string(),
        Kind::IpColumn | Kind::MacColumn => return None,
    };
    (canonical != text).then_some(canonical)
}

/// The text of an address in column form: IPv4-mapped as IPv4, IPv6 otherwise.
fn ip_text(a: [u8; 16]) -> String {
    ip_from_column(a, a[..12] != V4_MAPPED).to_string()
}

/// Text of each fixed-size value of `input` (NULL stays NULL).
fn to_text(input: &ArrayRef, len: i32, text: impl Fn(&[u8]) -> Option<String>) -> Result<ArrayRef> {
    let Some(values) = input.as_fixed_size_binary_opt() else {
        return exec_err!("expected FixedSizeBinary({len}), got {}", input.data_type());
    };
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * 16);
    for i in 0..values.len() {
        if values.is_null(i) {
            out.append_null();
        } else {
            match text(values.value(i)) {
                Some(t) => out.append_value(t),
                None => {
                    return exec_err!("a value of {} bytes, expected {len}", values.value_length())
                }
            }
        }
    }
    Ok(Arc::new(out.finish()))
}

/// The column form of each text value of `input` (NULL stays NULL); text that is no address
/// or MAC is an error naming it.
fn to_column(
    input: &ArrayRef,
    len: i32,
    name: &str,
    parse: impl Fn(&str) -> Option<Vec<u8>>,
) -> Result<ArrayRef> {
    let Some(values) = input.as_string_opt::<i32>() else {
        return exec_err!("{name} expects text, got {}", input.data_type());
    };
    let mut out = FixedSizeBinaryBuilder::with_capacity(values.len(), len);
    for v in values.iter() {
        match v {
            None => out.append_null(),
            Some(s) => match parse(s.trim()) {
                Some(bytes) => out.append_value(bytes)?,
                None => {
                    let what = if len == IP_LEN {
                        "an IP address"
                    } else {
                        "a MAC address (aa:bb:cc:dd:ee:ff)"
                    };
                    return exec_err!("{name}('{s}'): not {what}");
                }
            },
        }
    }
    let out: FixedSizeBinaryArray = out.finish();
    Ok(Arc::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;

    fn call(kind: Kind, input: ArrayRef) -> Result<ArrayRef> {
        let f = functions()
            .into_iter()
            .find(|f| {
                f.name()
                    == match kind {
                        Kind::IpText => "ip_text",
                        Kind::MacText => "mac_text",
                        Kind::IpColumn => "ip_column",
                        Kind::MacColumn => "mac_column",
                    }
            })
            .unwrap_or_else(|| panic!("no function for {kind:?}"));
        let ret = f.return_type(&[input.data_type().clone()])?;
        let args = ScalarFunctionArgs {
            number_rows: input.len(),
            arg_fields: vec![Arc::new(Field::new("a", input.data_type().clone(), true))],
            args: vec![ColumnarValue::Array(input)],
            return_field: Arc::new(Field::new("r", ret, true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        match f.invoke_with_args(args)? {
            ColumnarValue::Array(a) => Ok(a),
            ColumnarValue::Scalar(s) => s.to_array(),
        }
    }

    fn texts(a: &ArrayRef) -> Vec<Option<String>> {
        a.as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect()
    }

    #[test]
    fn addresses_go_to_text_and_back() {
        let text: ArrayRef = Arc::new(StringArray::from(vec![
            Some("192.0.2.1"),
            Some("2001:db8::1"),
            None,
            Some("::1"),
        ]));
        let column = call(Kind::IpColumn, text.clone()).expect("ip_column");
        let first = column.as_fixed_size_binary().value(0).to_vec();
        assert_eq!(
            first,
            crate::store::address::v4_to_column([192, 0, 2, 1]).to_vec()
        );
        let back = call(Kind::IpText, column).expect("ip_text");
        assert_eq!(texts(&back), texts(&text), "ip_text(ip_column(x)) != x");
    }

    #[test]
    fn macs_go_to_text_and_back() {
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("3c:22:fb:00:00:2a"), None]));
        let column = call(Kind::MacColumn, text.clone()).expect("mac_column");
        assert_eq!(
            column.as_fixed_size_binary().value(0),
            [0x3c, 0x22, 0xfb, 0, 0, 0x2a]
        );
        assert_eq!(
            texts(&call(Kind::MacText, column).expect("mac_text")),
            texts(&text)
        );
    }

    #[test]
    fn text_that_is_no_address_is_an_error_naming_it() {
        let bad: ArrayRef = Arc::new(StringArray::from(vec!["10.1.2"]));
        let e = call(Kind::IpColumn, bad).expect_err("10.1.2 accepted");
        assert!(
            e.to_string()
                .contains("ip_column('10.1.2'): not an IP address"),
            "{e}"
        );
        let bad: ArrayRef = Arc::new(StringArray::from(vec!["3c:22"]));
        let e = call(Kind::MacColumn, bad).expect_err("3c:22 accepted");
        assert!(e.to_string().contains("mac_column('3c:22')"), "{e}");
    }
}
