//! The AMQP 1.0 message format (OASIS AMQP 1.0 part 3.2), as stored in RabbitMQ streams and
//! carried by the stream protocol: decode a message into its sections, encode it back, and
//! convert it to and from an AMQP 0-9-1 message the way RabbitMQ does ([`convert`]).
//!
//! Runs wherever a stream message crosses protocols: when an AMQP 0-9-1 client publishes into a
//! stream (0-9-1 → 1.0, once per message) and when it consumes from one (1.0 → 0-9-1, once per
//! delivery). Stream-protocol clients get the stored bytes unchanged: nothing here runs for them.
//!
//! A message is: `header? delivery-annotations? message-annotations? properties?
//! application-properties? body footer?`, where the body is one or more `data` sections, one or
//! more `amqp-sequence` sections or one `amqp-value` section. Each section is a described value
//! whose descriptor is a `ulong` code (`0x70..=0x78`) or the matching symbol.
//!
//! # Invariants
//! - [`Message10::decode`] never panics, on any input: malformed bytes are an [`Amqp10Error`].
//!   Nesting is bounded ([`value::MAX_DEPTH`]) and so is the number of decoded values.
//! - The body is never copied by decoding: `data` sections are `Bytes` slices of the input, and
//!   `amqp-sequence` / `amqp-value` bodies are kept as one encoded slice (descriptors included).
//! - Section order and cardinality are checked as the spec states them; a message without a body
//!   is an error (RabbitMQ refuses it too), and so is one of more than [`MAX_SECTIONS`] sections.
//! - `Message10::decode(m.to_bytes()) == m` for every message whose values round trip (see
//!   [`value`]) and whose `Data` body is not empty (an empty one is written as one empty section).
//! - Header and properties fields accept any integer type whose value fits the field's type, and a
//!   string or a symbol for text fields; they are written back with the type the spec gives.
pub mod convert;
pub mod value;

#[cfg(test)]
mod tests;

pub use convert::{from_amqp091, from_amqp091_routed, message_from_amqp091, to_amqp091};
pub use value::Value;

use bytes::{BufMut, Bytes, BytesMut};
use value::{Decoder, DESCRIBED, LIST0, LIST32, LIST8, SMALLULONG, VBIN32, VBIN8};

/// An AMQP 1.0 message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Amqp10Error {
    #[error("truncated AMQP 1.0 value")]
    Truncated,
    #[error("unknown AMQP 1.0 constructor {0:#04x}")]
    BadConstructor(u8),
    #[error("AMQP 1.0 boolean byte {0:#04x} is neither 0 nor 1")]
    BadBoolean(u8),
    #[error("AMQP 1.0 compound value: size does not match its elements")]
    BadCompound,
    #[error("AMQP 1.0 compound value: count does not match its elements")]
    BadCount,
    #[error("AMQP 1.0 value nested too deeply")]
    TooDeep,
    #[error("AMQP 1.0 value holds too many elements for its size")]
    TooManyValues,
    #[error("bytes after the AMQP 1.0 value")]
    TrailingBytes,
    #[error("not an AMQP 1.0 message section")]
    NotASection,
    #[error("AMQP 1.0 message section of the wrong type")]
    BadSection,
    #[error("AMQP 1.0 message sections out of order or repeated")]
    SectionOrder,
    #[error("AMQP 1.0 message has no body")]
    MissingBody,
    #[error("AMQP 1.0 message has more than {MAX_SECTIONS} sections")]
    TooManySections,
    #[error("AMQP 1.0 message field {0} has the wrong type")]
    BadField(&'static str),
}

/// Section descriptor codes (spec part 3.2), as `ulong`s; symbolic descriptors map to these.
pub mod descriptor {
    pub const HEADER: u64 = 0x70;
    pub const DELIVERY_ANNOTATIONS: u64 = 0x71;
    pub const MESSAGE_ANNOTATIONS: u64 = 0x72;
    pub const PROPERTIES: u64 = 0x73;
    pub const APPLICATION_PROPERTIES: u64 = 0x74;
    pub const DATA: u64 = 0x75;
    pub const AMQP_SEQUENCE: u64 = 0x76;
    pub const AMQP_VALUE: u64 = 0x77;
    pub const FOOTER: u64 = 0x78;
    /// The symbolic descriptors, indexed by `code - HEADER`.
    pub const SYMBOLS: [&[u8]; 9] = [
        b"amqp:header:list",
        b"amqp:delivery-annotations:map",
        b"amqp:message-annotations:map",
        b"amqp:properties:list",
        b"amqp:application-properties:map",
        b"amqp:data:binary",
        b"amqp:amqp-sequence:list",
        b"amqp:amqp-value:*",
        b"amqp:footer:map",
    ];
}

/// A map section (annotations, application properties, footer): pairs in wire order.
///
/// The spec restricts annotation keys to symbols (RabbitMQ: `x-` symbols) and application
/// property keys to strings with simple values; the codec keeps whatever was sent and the
/// conversions skip what they cannot map.
pub type Map = Vec<(Value, Value)>;

/// The first value under a string or symbol key `key`.
pub fn map_get<'a>(map: &'a [(Value, Value)], key: &[u8]) -> Option<&'a Value> {
    map.iter().find(|(k, _)| k.as_str_bytes().is_some_and(|b| b.as_ref() == key)).map(|(_, v)| v)
}

/// The `header` section: delivery details. `None` fields were absent (null); the spec's defaults
/// then apply (durable false, priority 4, first-acquirer false, delivery-count 0).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Header {
    /// Whether the message must survive a broker restart (0-9-1 delivery-mode 2).
    pub durable: Option<bool>,
    /// Relative priority.
    pub priority: Option<u8>,
    /// Time to live in milliseconds (0-9-1 expiration).
    pub ttl: Option<u32>,
    /// Whether this delivery is the first acquisition of the message.
    pub first_acquirer: Option<bool>,
    /// Prior unsuccessful delivery attempts.
    pub delivery_count: Option<u32>,
}

/// A message-id or correlation-id: one of the four types the spec allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageId {
    /// `message-id-ulong`.
    Ulong(u64),
    /// `message-id-uuid`.
    Uuid([u8; 16]),
    /// `message-id-binary`.
    Binary(Bytes),
    /// `message-id-string` (UTF-8, not checked).
    String(Bytes),
}

/// The `properties` section: immutable properties of the bare message. `None` = absent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Properties {
    /// Application message identifier.
    pub message_id: Option<MessageId>,
    /// Identity of the user that produced the message (binary).
    pub user_id: Option<Bytes>,
    /// The address of the node the message is destined for.
    pub to: Option<Bytes>,
    /// Application subject.
    pub subject: Option<Bytes>,
    /// The address of the node to send replies to.
    pub reply_to: Option<Bytes>,
    /// Application correlation identifier.
    pub correlation_id: Option<MessageId>,
    /// MIME content type (a symbol).
    pub content_type: Option<Bytes>,
    /// MIME content encoding (a symbol).
    pub content_encoding: Option<Bytes>,
    /// Absolute expiry time, milliseconds since the Unix epoch.
    pub absolute_expiry_time: Option<i64>,
    /// Creation time, milliseconds since the Unix epoch.
    pub creation_time: Option<i64>,
    /// The group the message belongs to.
    pub group_id: Option<Bytes>,
    /// Position of the message within its group.
    pub group_sequence: Option<u32>,
    /// The group replies should belong to.
    pub reply_to_group_id: Option<Bytes>,
}

/// The body of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// One or more `data` sections, each a slice of the decoded input.
    Data(Vec<Bytes>),
    /// One or more `amqp-sequence` sections, kept encoded: all of their bytes, descriptors
    /// included, as one slice of the input.
    Sequence(Bytes),
    /// One `amqp-value` section, kept encoded: its bytes, descriptor included.
    Value(Bytes),
}

impl Body {
    /// The values the body sections carry: each data section's `Binary`, each sequence
    /// section's `List`, or the amqp-value. Decodes (and so allocates); the body stays as is.
    pub fn values(&self) -> Result<Vec<Value>, Amqp10Error> {
        match self {
            Body::Data(parts) => Ok(parts.iter().cloned().map(Value::Binary).collect()),
            Body::Sequence(raw) | Body::Value(raw) => {
                let mut d = Decoder::new(raw);
                let mut out = Vec::new();
                while !d.at_end() {
                    match d.value(0)? {
                        Value::Described(_, v) => out.push(*v),
                        _ => return Err(Amqp10Error::NotASection),
                    }
                }
                Ok(out)
            }
        }
    }
}

/// A decoded AMQP 1.0 message. `None` sections were absent.
#[derive(Debug, Clone, PartialEq)]
pub struct Message10 {
    /// The `header` section.
    pub header: Option<Header>,
    /// The `delivery-annotations` section (hop-by-hop; RabbitMQ ignores it).
    pub delivery_annotations: Option<Map>,
    /// The `message-annotations` section: `x-` symbol keys → values.
    pub message_annotations: Option<Map>,
    /// The `properties` section.
    pub properties: Option<Properties>,
    /// The `application-properties` section: string keys → simple values.
    pub application_properties: Option<Map>,
    /// The body.
    pub body: Body,
    /// The `footer` section.
    pub footer: Option<Map>,
}

/// Where a section may appear: sections must come in increasing rank; body sections share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Header,
    DeliveryAnnotations,
    MessageAnnotations,
    Properties,
    ApplicationProperties,
    Data,
    Sequence,
    AmqpValue,
    Footer,
}

impl Section {
    const ALL: [Section; 9] = [
        Section::Header,
        Section::DeliveryAnnotations,
        Section::MessageAnnotations,
        Section::Properties,
        Section::ApplicationProperties,
        Section::Data,
        Section::Sequence,
        Section::AmqpValue,
        Section::Footer,
    ];

    fn from_descriptor(d: &Value) -> Result<Section, Amqp10Error> {
        let index = match d {
            Value::Ulong(code) => code.checked_sub(descriptor::HEADER).and_then(|i| usize::try_from(i).ok()),
            Value::Symbol(name) => descriptor::SYMBOLS.iter().position(|s| *s == name.as_ref()),
            _ => None,
        };
        index.and_then(|i| Section::ALL.get(i).copied()).ok_or(Amqp10Error::NotASection)
    }

    fn rank(self) -> u8 {
        match self {
            Section::Header => 0,
            Section::DeliveryAnnotations => 1,
            Section::MessageAnnotations => 2,
            Section::Properties => 3,
            Section::ApplicationProperties => 4,
            Section::Data | Section::Sequence | Section::AmqpValue => 5,
            Section::Footer => 6,
        }
    }
}

/// A field of a header or properties list: `Ok(None)` for null, an error for the wrong type.
fn field<T>(v: Value, name: &'static str, f: impl FnOnce(Value) -> Option<T>) -> Result<Option<T>, Amqp10Error> {
    match v {
        Value::Null => Ok(None),
        v => f(v).map(Some).ok_or(Amqp10Error::BadField(name)),
    }
}

fn as_bool(v: Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(b),
        _ => None,
    }
}
fn as_u8(v: Value) -> Option<u8> {
    v.as_i64().and_then(|i| u8::try_from(i).ok())
}
fn as_u32(v: Value) -> Option<u32> {
    v.as_i64().and_then(|i| u32::try_from(i).ok())
}
fn as_timestamp(v: Value) -> Option<i64> {
    match v {
        Value::Timestamp(t) => Some(t),
        other => other.as_i64(),
    }
}
fn as_text(v: Value) -> Option<Bytes> {
    match v {
        Value::String(b) | Value::Symbol(b) => Some(b),
        _ => None,
    }
}
fn as_binary(v: Value) -> Option<Bytes> {
    match v {
        Value::Binary(b) => Some(b),
        _ => None,
    }
}
fn as_message_id(v: Value) -> Option<MessageId> {
    match v {
        Value::Ulong(n) => Some(MessageId::Ulong(n)),
        Value::Uuid(u) => Some(MessageId::Uuid(u)),
        Value::Binary(b) => Some(MessageId::Binary(b)),
        Value::String(b) => Some(MessageId::String(b)),
        _ => None,
    }
}

/// The fields of a list section, padded with nulls to `n`; more than `n` is an error.
fn fields(v: Value, n: usize, name: &'static str) -> Result<std::vec::IntoIter<Value>, Amqp10Error> {
    let Value::List(mut items) = v else { return Err(Amqp10Error::BadSection) };
    if items.len() > n {
        return Err(Amqp10Error::BadField(name));
    }
    items.resize(n, Value::Null);
    Ok(items.into_iter())
}

/// A list of fields with the trailing nulls left out (as RabbitMQ and the spec's examples do).
fn trimmed_list(mut items: Vec<Value>) -> Value {
    while items.last() == Some(&Value::Null) {
        items.pop();
    }
    Value::List(items)
}

fn opt<T>(o: &Option<T>, f: impl FnOnce(&T) -> Value) -> Value {
    o.as_ref().map_or(Value::Null, f)
}

impl MessageId {
    fn to_value(&self) -> Value {
        match self {
            MessageId::Ulong(n) => Value::Ulong(*n),
            MessageId::Uuid(u) => Value::Uuid(*u),
            MessageId::Binary(b) => Value::Binary(b.clone()),
            MessageId::String(b) => Value::String(b.clone()),
        }
    }
}

/// Fields of the header list.
const HEADER_FIELDS: usize = 5;
/// Fields of the properties list.
const PROPERTIES_FIELDS: usize = 13;

impl Header {
    fn from_value(v: Value) -> Result<Header, Amqp10Error> {
        let mut f = fields(v, HEADER_FIELDS, "header")?;
        let mut next = || f.next().unwrap_or(Value::Null);
        Ok(Header {
            durable: field(next(), "header.durable", as_bool)?,
            priority: field(next(), "header.priority", as_u8)?,
            ttl: field(next(), "header.ttl", as_u32)?,
            first_acquirer: field(next(), "header.first-acquirer", as_bool)?,
            delivery_count: field(next(), "header.delivery-count", as_u32)?,
        })
    }

    fn to_value(&self) -> Value {
        trimmed_list(vec![
            opt(&self.durable, |b| Value::Bool(*b)),
            opt(&self.priority, |p| Value::Ubyte(*p)),
            opt(&self.ttl, |t| Value::Uint(*t)),
            opt(&self.first_acquirer, |b| Value::Bool(*b)),
            opt(&self.delivery_count, |c| Value::Uint(*c)),
        ])
    }
}

impl Properties {
    fn from_value(v: Value) -> Result<Properties, Amqp10Error> {
        let mut f = fields(v, PROPERTIES_FIELDS, "properties")?;
        let mut next = || f.next().unwrap_or(Value::Null);
        Ok(Properties {
            message_id: field(next(), "properties.message-id", as_message_id)?,
            user_id: field(next(), "properties.user-id", as_binary)?,
            to: field(next(), "properties.to", as_text)?,
            subject: field(next(), "properties.subject", as_text)?,
            reply_to: field(next(), "properties.reply-to", as_text)?,
            correlation_id: field(next(), "properties.correlation-id", as_message_id)?,
            content_type: field(next(), "properties.content-type", as_text)?,
            content_encoding: field(next(), "properties.content-encoding", as_text)?,
            absolute_expiry_time: field(next(), "properties.absolute-expiry-time", as_timestamp)?,
            creation_time: field(next(), "properties.creation-time", as_timestamp)?,
            group_id: field(next(), "properties.group-id", as_text)?,
            group_sequence: field(next(), "properties.group-sequence", as_u32)?,
            reply_to_group_id: field(next(), "properties.reply-to-group-id", as_text)?,
        })
    }

    fn to_value(&self) -> Value {
        let s = |o: &Option<Bytes>| opt(o, |b| Value::String(b.clone()));
        let sym = |o: &Option<Bytes>| opt(o, |b| Value::Symbol(b.clone()));
        trimmed_list(vec![
            opt(&self.message_id, MessageId::to_value),
            opt(&self.user_id, |b| Value::Binary(b.clone())),
            s(&self.to),
            s(&self.subject),
            s(&self.reply_to),
            opt(&self.correlation_id, MessageId::to_value),
            sym(&self.content_type),
            sym(&self.content_encoding),
            opt(&self.absolute_expiry_time, |t| Value::Timestamp(*t)),
            opt(&self.creation_time, |t| Value::Timestamp(*t)),
            s(&self.group_id),
            opt(&self.group_sequence, |n| Value::Uint(*n)),
            s(&self.reply_to_group_id),
        ])
    }

    /// Whether no field is set (such a section is left out by the 0-9-1 conversion).
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }
}

fn map_section(v: Value) -> Result<Map, Amqp10Error> {
    match v {
        Value::Map(pairs) => Ok(pairs),
        _ => Err(Amqp10Error::BadSection),
    }
}

/// Most sections a message may have. The spec sets no limit on body sections; RabbitMQ caps them
/// at the same number so that a message of many tiny sections cannot cost disproportionate work.
pub const MAX_SECTIONS: usize = 10_000;

/// Bytes a section's descriptor takes in the encoder's output: `0x00 0x53 code`.
const SECTION_PREFIX_LEN: usize = 3;
/// Most bytes the encoder writes before a data section's content: prefix, `vbin32`, length.
const DATA_SECTION_OVERHEAD: usize = SECTION_PREFIX_LEN + 1 + 4;

fn put_section_prefix(out: &mut BytesMut, code: u64) {
    out.put_slice(&[DESCRIBED, SMALLULONG, code as u8]);
}

impl Message10 {
    /// A message with one `data` section and these properties (left out when empty).
    pub fn data(properties: Properties, body: Bytes) -> Message10 {
        Message10 {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: (!properties.is_empty()).then_some(properties),
            application_properties: None,
            body: Body::Data(vec![body]),
            footer: None,
        }
    }

    /// Decode an encoded message. Body sections are sliced out of `buf`, never copied.
    pub fn decode(buf: Bytes) -> Result<Message10, Amqp10Error> {
        let mut d = Decoder::new(&buf);
        let mut m = Message10 {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: None,
            application_properties: None,
            body: Body::Data(Vec::new()),
            footer: None,
        };
        let mut last: Option<Section> = None;
        // An encoded (sequence or value) body: its kind, the start of its first section and the
        // end of its last one.
        let mut raw_body: Option<(Section, usize, usize)> = None;
        let mut sections = 0;
        while !d.at_end() {
            sections += 1;
            if sections > MAX_SECTIONS {
                return Err(Amqp10Error::TooManySections);
            }
            let start = d.pos;
            if d.u8()? != DESCRIBED {
                return Err(Amqp10Error::NotASection);
            }
            let section = Section::from_descriptor(&d.value(1)?)?;
            let in_order = match last {
                None => true,
                Some(prev) => {
                    section.rank() > prev.rank()
                        || (section == prev && matches!(section, Section::Data | Section::Sequence))
                }
            };
            if !in_order {
                return Err(Amqp10Error::SectionOrder);
            }
            last = Some(section);
            match section {
                Section::Header => m.header = Some(Header::from_value(d.value(1)?)?),
                Section::DeliveryAnnotations => m.delivery_annotations = Some(map_section(d.value(1)?)?),
                Section::MessageAnnotations => m.message_annotations = Some(map_section(d.value(1)?)?),
                Section::Properties => m.properties = Some(Properties::from_value(d.value(1)?)?),
                Section::ApplicationProperties => m.application_properties = Some(map_section(d.value(1)?)?),
                Section::Footer => m.footer = Some(map_section(d.value(1)?)?),
                Section::Data => {
                    // Check the type before decoding: a data section holds a binary, nothing else.
                    if !matches!(d.peek()?, VBIN8 | VBIN32) {
                        return Err(Amqp10Error::BadSection);
                    }
                    let Value::Binary(b) = d.value(1)? else { return Err(Amqp10Error::BadSection) };
                    if let Body::Data(parts) = &mut m.body {
                        parts.push(b);
                    }
                }
                Section::Sequence | Section::AmqpValue => {
                    let code = d.skip(1)?;
                    if section == Section::Sequence && !matches!(code, LIST0 | LIST8 | LIST32) {
                        return Err(Amqp10Error::BadSection);
                    }
                    let from = raw_body.map_or(start, |(_, s, _)| s);
                    raw_body = Some((section, from, d.pos));
                }
            }
        }
        match raw_body {
            Some((Section::Sequence, from, to)) => m.body = Body::Sequence(buf.slice(from..to)),
            Some((_, from, to)) => m.body = Body::Value(buf.slice(from..to)),
            None if matches!(&m.body, Body::Data(parts) if !parts.is_empty()) => {}
            None => return Err(Amqp10Error::MissingBody),
        }
        Ok(m)
    }

    /// Append the encoded message. `data` bodies are copied into `out` (once); encoded bodies too.
    pub fn encode(&self, out: &mut BytesMut) {
        if let Some(h) = &self.header {
            put_section_prefix(out, descriptor::HEADER);
            h.to_value().encode(out);
        }
        let maps = [
            (descriptor::DELIVERY_ANNOTATIONS, &self.delivery_annotations),
            (descriptor::MESSAGE_ANNOTATIONS, &self.message_annotations),
        ];
        put_maps(out, &maps);
        if let Some(p) = &self.properties {
            put_section_prefix(out, descriptor::PROPERTIES);
            p.to_value().encode(out);
        }
        put_maps(out, &[(descriptor::APPLICATION_PROPERTIES, &self.application_properties)]);
        match &self.body {
            Body::Data(parts) if parts.is_empty() => put_data(out, &[]),
            Body::Data(parts) => {
                for p in parts {
                    put_data(out, p);
                }
            }
            Body::Sequence(raw) | Body::Value(raw) => out.put_slice(raw),
        }
        put_maps(out, &[(descriptor::FOOTER, &self.footer)]);
    }

    /// The encoded message as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let body = match &self.body {
            Body::Data(parts) => parts.iter().map(|p| p.len() + DATA_SECTION_OVERHEAD).sum(),
            Body::Sequence(raw) | Body::Value(raw) => raw.len(),
        };
        // Body plus a guess for the other sections; BytesMut grows if the guess is short.
        let mut out = BytesMut::with_capacity(body + 256);
        self.encode(&mut out);
        out.freeze()
    }
}

fn put_maps(out: &mut BytesMut, maps: &[(u64, &Option<Map>)]) {
    for (code, map) in maps {
        if let Some(pairs) = map {
            put_section_prefix(out, *code);
            value::encode_map(pairs, out);
        }
    }
}

fn put_data(out: &mut BytesMut, data: &[u8]) {
    put_section_prefix(out, descriptor::DATA);
    if data.len() <= u8::MAX as usize {
        out.put_u8(VBIN8);
        out.put_u8(data.len() as u8);
    } else {
        out.put_u8(VBIN32);
        out.put_u32(u32::try_from(data.len()).unwrap_or(u32::MAX));
    }
    out.put_slice(data);
}
