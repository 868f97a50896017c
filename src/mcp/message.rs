//! Reading JSON-RPC lines in place, and the one edit the proxy ever makes to one.
//!
//! [`Message::parse`] reads a line's top-level members without building a JSON tree: the id, params,
//! result and error stay borrowed text ([`RawValue`]), so a line the proxy only forwards costs one
//! scan. [`inject_progress_token`] adds `_meta.progressToken` to a request by splicing text into the
//! original bytes, so the rest of the line reaches the server exactly as the client wrote it.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// One JSON-RPC message, read in place from a line.
#[derive(Debug, Deserialize)]
pub struct Message<'a> {
    /// The id: requests and responses have one, notifications none.
    #[serde(default, borrow)]
    pub id: Option<&'a RawValue>,
    /// The method: requests and notifications have one, responses none.
    #[serde(default, borrow)]
    pub method: Option<Cow<'a, str>>,
    /// The parameters of a request or notification.
    #[serde(default, borrow)]
    pub params: Option<&'a RawValue>,
    /// The result of a successful response.
    #[serde(default, borrow)]
    pub result: Option<&'a RawValue>,
    /// The error of a failed response.
    #[serde(default, borrow)]
    pub error: Option<&'a RawValue>,
}

/// What kind of message a line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A method and an id.
    Request,
    /// A method and no id.
    Notification,
    /// An id and a result or an error.
    Response,
}

impl<'a> Message<'a> {
    /// Reads a line (its trailing `\r`, if any, is JSON whitespace). `None` when the line is not a
    /// JSON object with the shape of a JSON-RPC message (not JSON, not UTF-8, a batch, a bare value).
    pub fn parse(line: &'a [u8]) -> Option<Self> {
        let first = line.iter().find(|b| !b.is_ascii_whitespace())?;
        if *first != b'{' {
            return None;
        }
        let message: Message<'a> = serde_json::from_slice(line).ok()?;
        message.kind().map(|_| message)
    }

    /// The kind, or `None` when the members fit none (e.g. neither method nor result nor error).
    pub fn kind(&self) -> Option<Kind> {
        match (&self.method, self.id) {
            (Some(_), Some(_)) => Some(Kind::Request),
            (Some(_), None) => Some(Kind::Notification),
            (None, Some(_)) if self.result.is_some() || self.error.is_some() => {
                Some(Kind::Response)
            }
            _ => None,
        }
    }

    /// The method, or `""`.
    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or_default()
    }

    /// The id as a key for matching a response to its request.
    pub fn id_key(&self) -> Option<IdKey> {
        self.id.and_then(IdKey::of)
    }

    /// The id as a JSON value (for events).
    pub fn id_value(&self) -> serde_json::Value {
        self.id
            .and_then(|id| serde_json::from_str(id.get()).ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

/// A request id, as JSON-RPC compares them: the string `"1"` and the number `1` differ.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdKey {
    /// A numeric id, as written.
    Number(String),
    /// A string id, unescaped.
    Text(String),
}

impl IdKey {
    /// The key of a raw id; `None` for `null` or a value that is neither a number nor a string.
    pub fn of(raw: &RawValue) -> Option<IdKey> {
        let text = raw.get().trim();
        match text.as_bytes().first()? {
            b'"' => serde_json::from_str::<String>(text).ok().map(IdKey::Text),
            b'-' | b'0'..=b'9' => Some(IdKey::Number(text.to_owned())),
            _ => None,
        }
    }
}

/// A progress token (a string or an integer in MCP), as text: integers in decimal, as
/// [`crate::McpProgressPayload`] keeps them.
pub fn token_text(raw: &RawValue) -> Option<String> {
    let text = raw.get().trim();
    match text.as_bytes().first()? {
        b'"' => serde_json::from_str::<String>(text).ok(),
        b'-' | b'0'..=b'9' => Some(text.to_owned()),
        _ => None,
    }
}

/// The parts of request parameters the proxy reads.
#[derive(Debug, Default, Deserialize)]
pub struct Params<'a> {
    /// The tool of a `tools/call`.
    #[serde(default, borrow)]
    pub name: Option<Cow<'a, str>>,
    /// The tool's arguments.
    #[serde(default, borrow)]
    pub arguments: Option<&'a RawValue>,
    /// Request metadata (`progressToken`); `Some("null")` when it is there but `null`.
    #[serde(default, borrow, rename = "_meta", deserialize_with = "present")]
    pub meta: Option<&'a RawValue>,
    /// The token of a `notifications/progress`.
    #[serde(default, borrow, rename = "progressToken")]
    pub progress_token: Option<&'a RawValue>,
    /// The request a `notifications/cancelled` cancels.
    #[serde(default, borrow, rename = "requestId")]
    pub request_id: Option<&'a RawValue>,
}

impl<'a> Params<'a> {
    /// Reads an object of parameters; `None` if `raw` is not an object.
    pub fn parse(raw: &'a RawValue) -> Option<Self> {
        if !raw.get().trim_start().starts_with('{') {
            return None;
        }
        serde_json::from_str(raw.get()).ok()
    }

    /// `_meta.progressToken`, if the request carries one.
    pub fn meta_progress_token(&self) -> Option<&'a RawValue> {
        #[derive(Deserialize)]
        struct Meta<'b> {
            #[serde(default, borrow, rename = "progressToken")]
            progress_token: Option<&'b RawValue>,
        }
        let meta = self.meta?;
        if !meta.get().trim_start().starts_with('{') {
            return None;
        }
        serde_json::from_str::<Meta<'a>>(meta.get())
            .ok()?
            .progress_token
    }
}

/// A member that is there, whatever its value (`null` included, which `Option` would read as absent).
fn present<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'a RawValue>, D::Error> {
    <&'a RawValue>::deserialize(deserializer).map(Some)
}

/// `params` of a progress notification, read as numbers.
#[derive(Debug, Deserialize)]
pub struct ProgressParams {
    /// Work done.
    pub progress: f64,
    /// Total work, if known.
    #[serde(default)]
    pub total: Option<f64>,
    /// A status message.
    #[serde(default)]
    pub message: Option<String>,
}

/// Where `inner` (a slice of `outer`) starts in `outer`, if it is one.
fn offset_in(outer: &[u8], inner: &str) -> Option<usize> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (start.checked_add(inner.len())? <= outer.len()).then_some(start)
}

/// Where the token goes.
enum Splice {
    /// Into the existing `_meta` object (followed by this separator).
    InMeta(&'static str),
    /// In a new `_meta` after the tool's name.
    NewMeta,
}

/// A `tools/call` request as the relay reads it, in one pass: only what adding a progress token
/// needs. Any other line fails to read as one (cheaply: at its first mismatch, or at the end).
#[derive(Debug, Deserialize)]
struct ToolCall<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(borrow)]
    params: CallParams<'a>,
}

/// The params of a `tools/call`: an object (never an array) with a string `name`.
#[derive(Debug)]
struct CallParams<'a> {
    /// The tool's name, kept raw for its place in the line.
    name: &'a RawValue,
    /// `_meta`, whatever its value.
    meta: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for CallParams<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Fields<'a> {
            type Value = CallParams<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object with a name")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                use serde::de::Error;
                let (mut name, mut meta) = (None::<&'a RawValue>, None::<&'a RawValue>);
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "name" if name.is_some() => return Err(M::Error::duplicate_field("name")),
                        "_meta" if meta.is_some() => {
                            return Err(M::Error::duplicate_field("_meta"))
                        }
                        "name" => name = Some(map.next_value()?),
                        "_meta" => meta = Some(map.next_value()?),
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                match name {
                    Some(name) if name.get().starts_with('"') => Ok(CallParams { name, meta }),
                    _ => Err(M::Error::missing_field("name")),
                }
            }
        }
        deserializer.deserialize_map(Fields(std::marker::PhantomData))
    }
}

/// `line` with `"progressToken":"TOKEN"` added to `params._meta` when it is a `tools/call`
/// request (a method, an id, params with a name) that has no progress token, creating `_meta` if
/// needed. Everything else is kept byte for byte: the text is spliced in after the opening brace of
/// `_meta`, or after the tool's name. `None` when the line is no such request, or its `_meta` is
/// not an object, or it has a token already. The line is read once.
///
/// `token` is asked for only when the line takes one; it must need no JSON escaping (the proxy's
/// tokens are `ipckit-PID-N`).
pub fn inject_progress_token(line: &[u8], token: impl FnOnce() -> String) -> Option<Vec<u8>> {
    let first = line.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    let call: ToolCall<'_> = serde_json::from_slice(line).ok()?;
    if call.method != "tools/call" || call.id.get() == "null" {
        return None;
    }
    let (at, insert) = match call.params.meta {
        // The token is asked for below, once the line is known to take one.
        Some(meta) => {
            let text = meta.get();
            if !text.starts_with('{') {
                return None;
            }
            #[derive(Deserialize)]
            struct Meta<'b> {
                #[serde(default, borrow, rename = "progressToken")]
                progress_token: Option<&'b RawValue>,
            }
            if serde_json::from_str::<Meta<'_>>(text)
                .ok()?
                .progress_token
                .is_some()
            {
                return None;
            }
            let empty = text[1..].trim_start().starts_with('}');
            let comma = if empty { "" } else { "," };
            (offset_in(line, text)? + 1, Splice::InMeta(comma))
        }
        None => {
            let name = call.params.name.get();
            (offset_in(line, name)? + name.len(), Splice::NewMeta)
        }
    };
    let line_before = line.get(..at)?;
    let token = token();
    let insert = match insert {
        Splice::InMeta(comma) => format!("\"progressToken\":\"{token}\"{comma}"),
        Splice::NewMeta => format!(",\"_meta\":{{\"progressToken\":\"{token}\"}}"),
    };
    let mut out = Vec::with_capacity(line.len() + insert.len());
    out.extend_from_slice(line_before);
    out.extend_from_slice(insert.as_bytes());
    out.extend_from_slice(line.get(at..)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn inject(line: &str) -> Option<String> {
        inject_progress_token(line.as_bytes(), || "ipckit-1-1".to_owned())
            .map(|bytes| String::from_utf8(bytes).unwrap())
    }

    #[test]
    fn kinds_ids_and_methods() {
        let request =
            Message::parse(br#"{"jsonrpc":"2.0","id":"a\"b","method":"tools/list"}"#).unwrap();
        assert_eq!(request.kind(), Some(Kind::Request));
        assert_eq!(request.id_key(), Some(IdKey::Text("a\"b".into())));
        let response = Message::parse(br#"{"result":{},"jsonrpc":"2.0","id":7}"#).unwrap();
        assert_eq!(response.kind(), Some(Kind::Response));
        assert_eq!(response.id_key(), Some(IdKey::Number("7".into())));
        assert_ne!(IdKey::Number("1".into()), IdKey::Text("1".into()));
        let note =
            Message::parse(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\r")
                .unwrap();
        assert_eq!(note.kind(), Some(Kind::Notification));
        assert_eq!(note.method(), "notifications/initialized");
    }

    #[test]
    fn what_is_not_a_message_is_none() {
        for line in [
            &b"hello"[..],
            b"",
            b"   ",
            b"[{\"jsonrpc\":\"2.0\",\"method\":\"a\"}]",
            b"{\"jsonrpc\":\"2.0\"}",
            b"{\"id\":1}",
            b"{\"method\":\"a\",\"method\":\"b\"}",
            b"{\"method\":\"a\"",
            b"{\"method\":\"\xff\"}",
            b"42",
        ] {
            assert!(
                Message::parse(line).is_none(),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn injection_adds_meta_and_keeps_every_other_byte() {
        let line = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"t","arguments":{"x":[1, 2]}}}"#;
        let out = inject(line).unwrap();
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"t","_meta":{"progressToken":"ipckit-1-1"},"arguments":{"x":[1, 2]}}}"#
        );
        let with_meta =
            r#"{"id":1,"method":"tools/call","params":{"name":"t","_meta":{"trace":"x"}}}"#;
        let out: Value = serde_json::from_str(&inject(with_meta).unwrap()).unwrap();
        assert_eq!(
            out["params"]["_meta"],
            json!({"progressToken": "ipckit-1-1", "trace": "x"})
        );
        let empty_meta = r#"{"id":1,"method":"tools/call","params":{"name":"t","_meta":{ }}}"#;
        let out: Value = serde_json::from_str(&inject(empty_meta).unwrap()).unwrap();
        assert_eq!(
            out["params"]["_meta"],
            json!({"progressToken": "ipckit-1-1"})
        );
        let spaced = r#"{ "method" : "tools/call" , "params" : { "name" : "t" } , "id" : "x" }"#;
        let out: Value = serde_json::from_str(&inject(spaced).unwrap()).unwrap();
        assert_eq!(
            out["params"],
            json!({"name": "t", "_meta": {"progressToken": "ipckit-1-1"}})
        );
    }

    #[test]
    fn injection_refuses_what_it_cannot_do_cleanly() {
        for line in [
            r#"{"id":1,"method":"tools/call","params":{"name":"t","_meta":{"progressToken":3}}}"#,
            r#"{"id":1,"method":"tools/call","params":{"name":"t","_meta":null}}"#,
            r#"{"id":1,"method":"tools/call","params":[1]}"#,
            r#"{"id":1,"method":"tools/call","params":{}}"#,
            r#"{"id":1,"method":"tools/call"}"#,
            r#"{"method":"tools/call","params":{"name":"t"}}"#,
            r#"{"id":null,"method":"tools/call","params":{"name":"t"}}"#,
            r#"{"id":1,"method":"tools/list","params":{"name":"t"}}"#,
            r#"{"id":1,"method":"tools/call","params":{"name":"t"},"method":"x"}"#,
        ] {
            assert_eq!(inject(line), None, "{line}");
        }
    }

    #[test]
    fn tokens_are_text_whether_strings_or_integers() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        assert_eq!(token_text(&raw("17")).as_deref(), Some("17"));
        assert_eq!(token_text(&raw("\"abc\"")).as_deref(), Some("abc"));
        assert_eq!(token_text(&raw("null")), None);
        assert_eq!(token_text(&raw("{}")), None);
    }
}
