//! AMF0, the value encoding of FLV script tags and RTMP commands.
//!
//! [`decode`] reads one value and advances the input; [`decode_all`] reads a
//! whole body (an FLV script tag, an RTMP command message). [`encode`] and
//! [`encode_all`] write values back. Property order is kept, so a decoded
//! `onMetaData` re-encodes byte for byte (apart from an ECMA array's count,
//! which is a hint that some encoders get wrong and is rewritten).
//!
//! Peer input never panics the decoder and never makes it allocate more than
//! the input could hold: every length is checked against the bytes left
//! before anything is reserved, and nesting is capped at [`MAX_DEPTH`].
//! Totals are bounded too: a value takes as little as one byte on the wire
//! (`null`) but about 50 in memory (70 as an object property), so one call
//! of [`decode`] or [`decode_all`] produces at most [`value_budget`] values,
//! nested ones included, and refuses input that holds more with
//! [`ProtocolErrorKind::TooLarge`]. [`decode_all_with_budget`] takes another
//! budget.
//!
//! ```
//! use arcly_mux::amf0::{self, Amf0Value};
//! let mut out = bytes::BytesMut::new();
//! amf0::encode_all(
//!     &[
//!         Amf0Value::from("connect"),
//!         Amf0Value::Number(1.0),
//!         Amf0Value::Object(vec![("app".into(), Amf0Value::from("live"))]),
//!     ],
//!     &mut out,
//! );
//! let values = amf0::decode_all(&out).unwrap();
//! assert_eq!(values[0].as_str(), Some("connect"));
//! assert_eq!(values[2].get("app").and_then(Amf0Value::as_str), Some("live"));
//! ```
//!
//! Not covered: AMF3. Its switch marker (`0x11`) is recognised and refused
//! with [`ProtocolErrorKind::Unsupported`], so the RTMP layer can tell it
//! apart from garbage. References (`0x07`) are returned as
//! [`Amf0Value::Reference`] without being resolved.

use arcly_core::{ProtocolError, ProtocolErrorKind};
use bytes::{BufMut, BytesMut};

/// The protocol name in errors from this module.
pub const PROTOCOL: &str = "amf0";

/// The deepest nesting of objects and arrays the decoder accepts. Deeper
/// input is refused rather than recursed into, so a peer cannot overflow
/// the stack.
pub const MAX_DEPTH: usize = 64;

/// The value budget of small inputs: any input may decode into this many
/// values (nested ones included), about 600 KB of memory at most.
pub const MIN_VALUE_BUDGET: usize = 4096;

/// The most values (nested ones included) one [`decode`] or [`decode_all`]
/// call produces from `input_len` bytes: [`MIN_VALUE_BUDGET`], or one value
/// per 8 input bytes for larger input.
///
/// Real AMF0 (commands, `onMetaData`, cue points) spends 9 bytes or more per
/// value (a number, a key and a value, a string), so only padding such as
/// runs of `null` or `undefined` goes over. With at most 72 bytes per value
/// (an object property) and vectors at most twice their length, the decoded
/// values take at most about 18 times the input (or about 600 KB for input
/// under 32 KiB), where unbounded a run of `null` bytes took about 100 times.
///
/// ```
/// use arcly_mux::amf0;
/// assert_eq!(amf0::value_budget(100), amf0::MIN_VALUE_BUDGET);
/// assert_eq!(amf0::value_budget(1 << 20), 1 << 17);
/// // 60 KiB of nulls is 61440 values: over the budget of 7680.
/// let err = amf0::decode_all(&[0x05; 60 << 10]).unwrap_err();
/// assert_eq!(err.kind, arcly_core::ProtocolErrorKind::TooLarge);
/// ```
pub const fn value_budget(input_len: usize) -> usize {
    let per_bytes = input_len / 8;
    if per_bytes > MIN_VALUE_BUDGET { per_bytes } else { MIN_VALUE_BUDGET }
}

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const MOVIECLIP: u8 = 0x04;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const REFERENCE: u8 = 0x07;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0a;
const DATE: u8 = 0x0b;
const LONG_STRING: u8 = 0x0c;
const UNSUPPORTED: u8 = 0x0d;
const RECORDSET: u8 = 0x0e;
const XML_DOCUMENT: u8 = 0x0f;
const TYPED_OBJECT: u8 = 0x10;
const AVMPLUS: u8 = 0x11;

/// One AMF0 value.
///
/// Objects and ECMA arrays keep their properties in input order: RTMP peers
/// and FLV players read `onMetaData` and command objects by key, but logs
/// and re-encoded output stay faithful to what was received.
///
/// ```
/// use arcly_mux::amf0::Amf0Value;
/// let meta = Amf0Value::EcmaArray(vec![
///     ("width".into(), Amf0Value::Number(1280.0)),
///     ("encoder".into(), Amf0Value::from("obs")),
/// ]);
/// assert_eq!(meta.get("width").and_then(Amf0Value::as_f64), Some(1280.0));
/// assert_eq!(meta.get("encoder").and_then(Amf0Value::as_str), Some("obs"));
/// assert!(meta.get("height").is_none());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Amf0Value {
    /// An IEEE 754 double (marker `0x00`).
    Number(f64),
    /// A boolean (marker `0x01`).
    Boolean(bool),
    /// A UTF-8 string of at most 65535 bytes (marker `0x02`). Longer
    /// strings are encoded as long strings.
    String(String),
    /// An anonymous object: ordered key/value pairs (marker `0x03`).
    Object(Vec<(String, Amf0Value)>),
    /// `null` (marker `0x05`).
    Null,
    /// `undefined` (marker `0x06`).
    Undefined,
    /// A reference to an earlier complex value by index (marker `0x07`),
    /// kept unresolved.
    Reference(u16),
    /// An associative array (marker `0x08`), as used by `onMetaData`.
    EcmaArray(Vec<(String, Amf0Value)>),
    /// A dense array (marker `0x0a`).
    StrictArray(Vec<Amf0Value>),
    /// A date (marker `0x0b`): milliseconds since the Unix epoch (UTC) and a
    /// time zone field that the specification says to ignore but which is
    /// kept so values round-trip.
    Date {
        /// Milliseconds since 1970-01-01T00:00:00Z.
        millis: f64,
        /// Reserved time zone offset, normally 0.
        timezone: i16,
    },
    /// A UTF-8 string with a 32-bit length (marker `0x0c`).
    LongString(String),
    /// The "unsupported" marker (`0x0d`).
    Unsupported,
    /// An XML document as text (marker `0x0f`).
    XmlDocument(String),
    /// An object with a class name (marker `0x10`).
    TypedObject {
        /// The registered class name.
        class_name: String,
        /// The properties, in input order.
        properties: Vec<(String, Amf0Value)>,
    },
}

impl Amf0Value {
    /// The text of a string, long string or XML document.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) | Self::LongString(s) | Self::XmlDocument(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The value of a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The properties of an object, ECMA array or typed object.
    pub fn properties(&self) -> Option<&[(String, Amf0Value)]> {
        match self {
            Self::Object(p) | Self::EcmaArray(p) | Self::TypedObject { properties: p, .. } => Some(p),
            _ => None,
        }
    }

    /// The first property named `key` of an object, ECMA array or typed
    /// object; `None` for other values or a missing key.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        self.properties()?.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl From<f64> for Amf0Value {
    fn from(n: f64) -> Self {
        Self::Number(n)
    }
}

impl From<bool> for Amf0Value {
    fn from(b: bool) -> Self {
        Self::Boolean(b)
    }
}

impl From<&str> for Amf0Value {
    fn from(s: &str) -> Self {
        Self::String(s.to_owned())
    }
}

impl From<String> for Amf0Value {
    fn from(s: String) -> Self {
        Self::String(s)
    }
}

fn error(kind: ProtocolErrorKind, context: impl Into<String>, offset: usize) -> ProtocolError {
    ProtocolError::new(PROTOCOL, kind, context).at(offset as u64)
}

/// A cursor that knows its offset, so errors say where they happened, and
/// how many more values it may produce.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    values_left: usize,
    budget: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], budget: usize) -> Self {
        Self { data, pos: 0, values_left: budget, budget }
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ProtocolError> {
        if self.remaining() < n {
            return Err(error(
                ProtocolErrorKind::Truncated,
                format!("{what}: need {n} bytes, {} left", self.remaining()),
                self.pos,
            ));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ProtocolError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, ProtocolError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ProtocolError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn f64(&mut self, what: &str) -> Result<f64, ProtocolError> {
        Ok(f64::from_be_bytes(self.array(what)?))
    }

    /// Reads `len` bytes of UTF-8. `take` checks the length against the
    /// input before anything is allocated, so a claimed 4 GB string in a
    /// short message fails without reserving memory.
    fn utf8(&mut self, len: usize, what: &str) -> Result<String, ProtocolError> {
        let start = self.pos;
        let raw = self.take(len, what)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(error(ProtocolErrorKind::InvalidValue, format!("{what} is not UTF-8: {e}"), start)),
        }
    }

    fn short_string(&mut self, what: &str) -> Result<String, ProtocolError> {
        let len = self.u16(what)?;
        self.utf8(usize::from(len), what)
    }

    fn long_string(&mut self, what: &str) -> Result<String, ProtocolError> {
        let len = self.u32(what)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.utf8(len, what)
    }

    /// Key/value pairs up to the `00 00 09` end marker. With `lenient_end`
    /// the input may also simply end where a key would start: some encoders
    /// leave the end marker off the last ECMA array of a script tag.
    fn properties(&mut self, depth: usize, lenient_end: bool) -> Result<Vec<(String, Amf0Value)>, ProtocolError> {
        let mut props = Vec::new();
        loop {
            if lenient_end && self.remaining() == 0 {
                return Ok(props);
            }
            let key = self.short_string("property name")?;
            if key.is_empty() && self.data.get(self.pos) == Some(&OBJECT_END) {
                self.pos += 1;
                return Ok(props);
            }
            let value = self.value(depth)?;
            props.push((key, value));
        }
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, ProtocolError> {
        if depth >= MAX_DEPTH {
            return Err(error(ProtocolErrorKind::TooLarge, format!("values nested deeper than {MAX_DEPTH}"), self.pos));
        }
        let at = self.pos;
        if self.values_left == 0 {
            return Err(error(
                ProtocolErrorKind::TooLarge,
                format!("more than {} values in {} bytes", self.budget, self.data.len()),
                at,
            ));
        }
        self.values_left -= 1;
        let marker = self.u8("type marker")?;
        let value = match marker {
            NUMBER => Amf0Value::Number(self.f64("number")?),
            BOOLEAN => Amf0Value::Boolean(self.u8("boolean")? != 0),
            STRING => Amf0Value::String(self.short_string("string")?),
            OBJECT => Amf0Value::Object(self.properties(depth + 1, false)?),
            NULL => Amf0Value::Null,
            UNDEFINED => Amf0Value::Undefined,
            REFERENCE => Amf0Value::Reference(self.u16("reference")?),
            ECMA_ARRAY => {
                // The count is only a hint (encoders write 0 or a wrong
                // value); the end marker delimits the array.
                self.u32("ECMA array count")?;
                Amf0Value::EcmaArray(self.properties(depth + 1, true)?)
            }
            STRICT_ARRAY => {
                let count = self.u32("strict array count")?;
                let count = usize::try_from(count).unwrap_or(usize::MAX);
                // Every value takes at least its marker byte, so a count
                // larger than the input left is a lie: refuse it before
                // reserving anything.
                if count > self.remaining() {
                    return Err(error(
                        ProtocolErrorKind::Truncated,
                        format!("strict array of {count} values in {} bytes", self.remaining()),
                        at,
                    ));
                }
                // Reserve little: each value may take far more memory than
                // its encoded bytes, so the count bounds only the input.
                let mut items = Vec::with_capacity(count.min(64));
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Amf0Value::StrictArray(items)
            }
            DATE => {
                let millis = self.f64("date")?;
                let timezone = i16::from_be_bytes(self.array("date time zone")?);
                Amf0Value::Date { millis, timezone }
            }
            LONG_STRING => Amf0Value::LongString(self.long_string("long string")?),
            UNSUPPORTED => Amf0Value::Unsupported,
            XML_DOCUMENT => Amf0Value::XmlDocument(self.long_string("XML document")?),
            TYPED_OBJECT => {
                let class_name = self.short_string("class name")?;
                let properties = self.properties(depth + 1, false)?;
                Amf0Value::TypedObject { class_name, properties }
            }
            AVMPLUS => {
                return Err(error(
                    ProtocolErrorKind::Unsupported,
                    "AMF3 value (avmplus switch marker 0x11): AMF3 is not supported",
                    at,
                ));
            }
            OBJECT_END => {
                return Err(error(ProtocolErrorKind::InvalidValue, "object end marker outside an object", at));
            }
            MOVIECLIP | RECORDSET => {
                return Err(error(ProtocolErrorKind::Unsupported, format!("reserved type marker {marker:#04x}"), at));
            }
            _ => {
                return Err(error(ProtocolErrorKind::InvalidValue, format!("unknown type marker {marker:#04x}"), at));
            }
        };
        Ok(value)
    }
}

/// Decodes one value from the front of `buf` and advances `buf` past it.
/// On error `buf` is left where it was.
///
/// ```
/// use arcly_mux::amf0::{self, Amf0Value};
/// let mut input: &[u8] = &[0x02, 0x00, 0x02, b'h', b'i', 0x05];
/// assert_eq!(amf0::decode(&mut input).unwrap(), Amf0Value::from("hi"));
/// assert_eq!(amf0::decode(&mut input).unwrap(), Amf0Value::Null);
/// assert!(input.is_empty());
/// ```
pub fn decode(buf: &mut &[u8]) -> Result<Amf0Value, ProtocolError> {
    let mut reader = Reader::new(buf, value_budget(buf.len()));
    let value = reader.value(0)?;
    *buf = &buf[reader.pos..];
    Ok(value)
}

/// Decodes every value in `data` (a script tag body or a command message),
/// at most [`value_budget`] of them, nested ones included.
pub fn decode_all(data: &[u8]) -> Result<Vec<Amf0Value>, ProtocolError> {
    decode_all_with_budget(data, value_budget(data.len()))
}

/// [`decode_all`] producing at most `max_values` values, nested ones
/// included; more fail with [`ProtocolErrorKind::TooLarge`].
///
/// ```
/// use arcly_mux::amf0;
/// assert_eq!(amf0::decode_all_with_budget(&[0x05; 3], 3).unwrap().len(), 3);
/// assert!(amf0::decode_all_with_budget(&[0x05; 4], 3).is_err());
/// ```
pub fn decode_all_with_budget(data: &[u8], max_values: usize) -> Result<Vec<Amf0Value>, ProtocolError> {
    let mut reader = Reader::new(data, max_values);
    let mut values = Vec::new();
    while reader.remaining() > 0 {
        values.push(reader.value(0)?);
    }
    Ok(values)
}

/// The largest length that fits `u32`; longer input cannot be represented
/// in AMF0 and is cut, which only a caller building multi-gigabyte values
/// could hit.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn put_short_string(s: &str, out: &mut BytesMut) {
    // A key or short string cannot exceed 65535 bytes; cut at a character
    // boundary rather than write a length that disagrees with the bytes.
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u16(end as u16);
    out.put_slice(&s.as_bytes()[..end]);
}

fn put_long_string(s: &str, out: &mut BytesMut) {
    let len = len_u32(s.len());
    out.put_u32(len);
    out.put_slice(&s.as_bytes()[..len as usize]);
}

fn put_properties(props: &[(String, Amf0Value)], out: &mut BytesMut) {
    for (key, value) in props {
        put_short_string(key, out);
        encode(value, out);
    }
    out.put_slice(&[0, 0, OBJECT_END]);
}

/// Appends the encoding of `value` to `out`. A [`Amf0Value::String`] longer
/// than 65535 bytes is written as a long string, and property names longer
/// than 65535 bytes are cut, since AMF0 cannot express either otherwise.
///
/// ```
/// use arcly_mux::amf0::{self, Amf0Value};
/// let mut out = bytes::BytesMut::new();
/// amf0::encode(&Amf0Value::Number(1.0), &mut out);
/// assert_eq!(&out[..], &[0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]);
/// ```
pub fn encode(value: &Amf0Value, out: &mut BytesMut) {
    match value {
        Amf0Value::Number(n) => {
            out.put_u8(NUMBER);
            out.put_f64(*n);
        }
        Amf0Value::Boolean(b) => {
            out.put_u8(BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        Amf0Value::String(s) if s.len() > usize::from(u16::MAX) => {
            out.put_u8(LONG_STRING);
            put_long_string(s, out);
        }
        Amf0Value::String(s) => {
            out.put_u8(STRING);
            put_short_string(s, out);
        }
        Amf0Value::Object(props) => {
            out.put_u8(OBJECT);
            put_properties(props, out);
        }
        Amf0Value::Null => out.put_u8(NULL),
        Amf0Value::Undefined => out.put_u8(UNDEFINED),
        Amf0Value::Reference(index) => {
            out.put_u8(REFERENCE);
            out.put_u16(*index);
        }
        Amf0Value::EcmaArray(props) => {
            out.put_u8(ECMA_ARRAY);
            out.put_u32(len_u32(props.len()));
            put_properties(props, out);
        }
        Amf0Value::StrictArray(items) => {
            out.put_u8(STRICT_ARRAY);
            let count = len_u32(items.len());
            out.put_u32(count);
            for item in items.iter().take(count as usize) {
                encode(item, out);
            }
        }
        Amf0Value::Date { millis, timezone } => {
            out.put_u8(DATE);
            out.put_f64(*millis);
            out.put_i16(*timezone);
        }
        Amf0Value::LongString(s) => {
            out.put_u8(LONG_STRING);
            put_long_string(s, out);
        }
        Amf0Value::Unsupported => out.put_u8(UNSUPPORTED),
        Amf0Value::XmlDocument(s) => {
            out.put_u8(XML_DOCUMENT);
            put_long_string(s, out);
        }
        Amf0Value::TypedObject { class_name, properties } => {
            out.put_u8(TYPED_OBJECT);
            put_short_string(class_name, out);
            put_properties(properties, out);
        }
    }
}

/// Appends the encodings of `values`, one after another.
pub fn encode_all(values: &[Amf0Value], out: &mut BytesMut) {
    for value in values {
        encode(value, out);
    }
}

/// Equality that treats two numbers as equal when their bits are: encoding
/// keeps every bit, so a NaN must come back as the same NaN.
fn same_bits(a: &Amf0Value, b: &Amf0Value) -> bool {
    use Amf0Value as V;
    let props = |a: &[(String, V)], b: &[(String, V)]| {
        a.len() == b.len() && a.iter().zip(b).all(|((ka, va), (kb, vb))| ka == kb && same_bits(va, vb))
    };
    match (a, b) {
        (V::Number(x), V::Number(y)) => x.to_bits() == y.to_bits(),
        (V::Date { millis: x, timezone: tx }, V::Date { millis: y, timezone: ty }) => {
            x.to_bits() == y.to_bits() && tx == ty
        }
        (V::Object(x), V::Object(y)) | (V::EcmaArray(x), V::EcmaArray(y)) => props(x, y),
        (V::TypedObject { class_name: cx, properties: px }, V::TypedObject { class_name: cy, properties: py }) => {
            cx == cy && props(px, py)
        }
        (V::StrictArray(x), V::StrictArray(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_bits(a, b)),
        _ => a == b,
    }
}

/// Fuzz entry point: decodes arbitrary bytes and, when they decode, checks
/// that encoding and decoding again gives the same values.
///
/// # Panics
/// When the round trip changes a value (a bug in this module).
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let Ok(values) = decode_all(data) else { return };
    let mut out = BytesMut::new();
    encode_all(&values, &mut out);
    let again = decode_all(&out).expect("re-encoded AMF0 decodes");
    assert!(
        values.len() == again.len() && values.iter().zip(&again).all(|(a, b)| same_bits(a, b)),
        "AMF0 round trip changed values: {values:?} -> {again:?}"
    );
    let mut one: &[u8] = data;
    let _ = decode(&mut one);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 60 KiB of nulls (an RTMP command under the 64 KiB command limit) is
    /// 61440 one-byte values: refused by the default budget instead of
    /// taking about 3 MB, and decoded when a budget allows it.
    #[test]
    fn value_budget_bounds_the_total() {
        let nulls = vec![NULL; 60 << 10];
        let err = decode_all(&nulls).unwrap_err();
        assert_eq!(err.kind, ProtocolErrorKind::TooLarge);
        assert_eq!(err.offset, Some(value_budget(nulls.len()) as u64));
        assert_eq!(decode_all_with_budget(&nulls, nulls.len()).unwrap().len(), nulls.len());
        // Nested values count: a strict array of 5000 nulls is 5001 values.
        let mut arr = vec![STRICT_ARRAY];
        arr.extend_from_slice(&5000u32.to_be_bytes());
        arr.resize(arr.len() + 5000, NULL);
        assert_eq!(decode_all(&arr).unwrap_err().kind, ProtocolErrorKind::TooLarge);
        assert!(decode_all_with_budget(&arr, 5001).is_ok());
        assert!(decode_all_with_budget(&arr, 5000).is_err());
        let mut one: &[u8] = &arr;
        assert_eq!(decode(&mut one).unwrap_err().kind, ProtocolErrorKind::TooLarge);
        // So do object properties.
        let mut obj = vec![OBJECT];
        for _ in 0..5000 {
            obj.extend_from_slice(&[0, 1, b'k', NULL]);
        }
        obj.extend_from_slice(&[0, 0, OBJECT_END]);
        assert_eq!(decode_all(&obj).unwrap_err().kind, ProtocolErrorKind::TooLarge);
        // Real values stay far below the budget: 10 000 numbers.
        let mut numbers = BytesMut::new();
        encode_all(&vec![Amf0Value::Number(1.0); 10_000], &mut numbers);
        assert_eq!(decode_all(&numbers).unwrap().len(), 10_000);
    }
}
