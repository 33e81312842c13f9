//! NetFlow v9 (RFC 3954).
//!
//! Packet header, 20 bytes (§5.1): version u16 (=9) @0, count u16 @2 (records of all kinds),
//! sysUpTime u32 ms @4, unix_secs u32 @8, package sequence u32 @12 (export packets sent by
//! this source id), source id u32 @16. Then FlowSets (§5.2-5.3), each `flowset id u16,
//! length u16` (header included, padded to 4 bytes): id 0 = template FlowSet, id 1 = options
//! template FlowSet, id >= 256 = data FlowSet of that template; 2..=255 are reserved (skipped).
//!
//! Template record (§5.2): template id u16 (>= 256), field count u16, then `type u16,
//! length u16` per field. Options template record (§6.1): template id u16, option scope
//! length u16 (bytes), option length u16 (bytes), then scope fields and option fields (4 bytes
//! each), padding to 4 bytes. Templates are kept per (exporter address, source id) by the
//! collector. v9 has no template withdrawal and no variable-length fields.

use super::templates::{FieldSpec, Template, TemplateEvent, TemplateSet, VARIABLE_LENGTH};
use super::{be_u16, be_u32, ParseError};

pub const HEADER_LEN: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V9Header {
    pub count: u16,
    pub sys_uptime_ms: u32,
    pub unix_secs: u32,
    pub sequence: u32,
    pub source_id: u32,
}

/// One FlowSet (v9) or Set (IPFIX): its id and body (after the 4-byte header, padding included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawSet<'a> {
    pub id: u16,
    pub body: &'a [u8],
}

/// A v9 packet split into its FlowSets. `error` tells why the split stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V9Message<'a> {
    pub header: V9Header,
    pub sets: Vec<RawSet<'a>>,
    pub error: Option<ParseError>,
}

/// Splits `bytes` into sets of `id u16, length u16 (header included)`. Fewer than 4 trailing
/// bytes are padding; a length below 4 or past the end stops the split with an error.
pub(crate) fn split_sets<'a>(
    mut bytes: &'a [u8],
    what: &'static str,
) -> (Vec<RawSet<'a>>, Option<ParseError>) {
    let mut sets = Vec::new();
    while bytes.len() >= 4 {
        let id = be_u16(bytes, 0).unwrap_or(0);
        let len = usize::from(be_u16(bytes, 2).unwrap_or(0));
        if len < 4 || len > bytes.len() {
            return (
                sets,
                Some(ParseError::Length {
                    what,
                    declared: len,
                    available: bytes.len(),
                }),
            );
        }
        sets.push(RawSet {
            id,
            body: bytes.get(4..len).unwrap_or(&[]),
        });
        bytes = bytes.get(len..).unwrap_or(&[]);
    }
    (sets, None)
}

/// Parses the v9 header and splits the FlowSets.
pub fn parse_v9(bytes: &[u8]) -> Result<V9Message<'_>, ParseError> {
    let trunc = ParseError::Truncated {
        what: "netflow v9 header",
        need: HEADER_LEN,
        have: bytes.len(),
    };
    let version = be_u16(bytes, 0).ok_or(trunc.clone())?;
    if version != 9 {
        return Err(ParseError::Version(version));
    }
    let header = V9Header {
        count: be_u16(bytes, 2).ok_or(trunc.clone())?,
        sys_uptime_ms: be_u32(bytes, 4).ok_or(trunc.clone())?,
        unix_secs: be_u32(bytes, 8).ok_or(trunc.clone())?,
        sequence: be_u32(bytes, 12).ok_or(trunc.clone())?,
        source_id: be_u32(bytes, 16).ok_or(trunc)?,
    };
    let (sets, error) = split_sets(bytes.get(HEADER_LEN..).unwrap_or(&[]), "netflow v9 flowset");
    Ok(V9Message {
        header,
        sets,
        error,
    })
}

fn fields(bytes: &[u8], n: usize) -> Option<Vec<FieldSpec>> {
    let raw = bytes.get(..n.checked_mul(4)?)?;
    let mut out = Vec::with_capacity(n);
    for f in raw.chunks_exact(4) {
        out.push(FieldSpec {
            id: be_u16(f, 0)?,
            enterprise: None,
            length: be_u16(f, 2)?,
        });
    }
    Some(out)
}

fn push_checked(set: &mut TemplateSet, t: Template) {
    // v9 has no variable-length encoding: 65535 is a plain (impossible) length.
    if t.fields.iter().any(|f| f.length == VARIABLE_LENGTH) {
        set.error = Some(ParseError::Template("field length 65535 in netflow v9"));
        return;
    }
    match t.check() {
        Ok(()) => set.events.push(TemplateEvent::Define(t)),
        Err(e) => set.error = Some(e),
    }
}

/// Parses a template FlowSet body (id 0).
pub fn parse_template_flowset(mut body: &[u8]) -> TemplateSet {
    let mut set = TemplateSet::default();
    while body.len() >= 4 {
        let id = be_u16(body, 0).unwrap_or(0);
        let n = usize::from(be_u16(body, 2).unwrap_or(0));
        if id == 0 && n == 0 {
            break; // padding
        }
        let Some(fs) = fields(body.get(4..).unwrap_or(&[]), n) else {
            set.error = Some(ParseError::Truncated {
                what: "netflow v9 template",
                need: 4 + 4 * n,
                have: body.len(),
            });
            break;
        };
        push_checked(
            &mut set,
            Template {
                id,
                scope_fields: 0,
                options: false,
                fields: fs,
            },
        );
        body = body.get(4 + 4 * n..).unwrap_or(&[]);
    }
    set
}

/// Parses an options template FlowSet body (id 1).
pub fn parse_options_template_flowset(mut body: &[u8]) -> TemplateSet {
    let mut set = TemplateSet::default();
    while body.len() >= 6 {
        let id = be_u16(body, 0).unwrap_or(0);
        let scope_len = usize::from(be_u16(body, 2).unwrap_or(0));
        let opt_len = usize::from(be_u16(body, 4).unwrap_or(0));
        if id == 0 {
            break; // padding
        }
        if scope_len % 4 != 0 || opt_len % 4 != 0 {
            set.error = Some(ParseError::Template("options lengths not multiples of 4"));
            break;
        }
        let n = (scope_len + opt_len) / 4;
        let Some(fs) = fields(body.get(6..).unwrap_or(&[]), n) else {
            set.error = Some(ParseError::Truncated {
                what: "netflow v9 options template",
                need: 6 + 4 * n,
                have: body.len(),
            });
            break;
        };
        let scope_fields = u16::try_from(scope_len / 4).unwrap_or(u16::MAX);
        push_checked(
            &mut set,
            Template {
                id,
                scope_fields,
                options: true,
                fields: fs,
            },
        );
        let used = 6 + 4 * n;
        // Each options template record is padded to a 4-byte boundary.
        body = body.get(used.next_multiple_of(4)..).unwrap_or(&[]);
    }
    set
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A v9 packet from FlowSets laid out per RFC 3954 §5.
    pub(crate) fn v9_packet(seq: u32, source_id: u32, sets: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&9u16.to_be_bytes());
        b.extend_from_slice(&(sets.len() as u16).to_be_bytes());
        b.extend_from_slice(&5_000u32.to_be_bytes());
        b.extend_from_slice(&1_700_000_010u32.to_be_bytes());
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&source_id.to_be_bytes());
        for (id, body) in sets {
            let mut body = body.clone();
            while body.len() % 4 != 0 {
                body.push(0);
            }
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
            b.extend_from_slice(&body);
        }
        b
    }

    pub(crate) fn template_body(id: u16, fields: &[(u16, u16)]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&(fields.len() as u16).to_be_bytes());
        for (t, l) in fields {
            b.extend_from_slice(&t.to_be_bytes());
            b.extend_from_slice(&l.to_be_bytes());
        }
        b
    }

    #[test]
    fn splits_and_parses_templates() {
        let tb = template_body(260, &[(8, 4), (12, 4), (2, 4), (1, 4)]);
        let p = v9_packet(3, 7, &[(0, tb.clone()), (260, vec![1; 16])]);
        let m = parse_v9(&p).unwrap();
        assert_eq!(
            (
                m.header.sequence,
                m.header.source_id,
                m.header.sys_uptime_ms
            ),
            (3, 7, 5000)
        );
        assert_eq!(m.sets.len(), 2);
        assert_eq!(m.error, None);
        let ts = parse_template_flowset(m.sets[0].body);
        assert_eq!(ts.error, None);
        let TemplateEvent::Define(t) = &ts.events[0] else {
            panic!("not a definition")
        };
        assert_eq!((t.id, t.fields.len(), t.min_record_len()), (260, 4, 16));
    }

    #[test]
    fn options_template_with_padding() {
        // id 300, scope length 4 (system scope), option length 8.
        let mut ob = vec![1, 44, 0, 4, 0, 8, 0, 1, 0, 4, 0, 34, 0, 4, 0, 35, 0, 1];
        ob.extend_from_slice(&[0, 0]); // pad to 4
        let ts = parse_options_template_flowset(&ob);
        assert_eq!(ts.error, None);
        let TemplateEvent::Define(t) = &ts.events[0] else {
            panic!("not a definition")
        };
        assert_eq!(
            (t.id, t.scope_fields, t.options, t.min_record_len()),
            (300, 1, true, 9)
        );
    }

    #[test]
    fn malformed_pieces() {
        assert_eq!(parse_v9(&[0, 10, 0, 0]), Err(ParseError::Version(10)));
        assert!(matches!(
            parse_v9(&[0, 9, 0]),
            Err(ParseError::Truncated { .. })
        ));
        let mut p = v9_packet(0, 0, &[(0, template_body(256, &[(8, 4)]))]);
        p[HEADER_LEN + 3] = 200; // flowset length past the end
        assert!(parse_v9(&p).unwrap().error.is_some());
        p[HEADER_LEN + 3] = 2; // below 4
        assert!(parse_v9(&p).unwrap().error.is_some());
        // Template claiming more fields than present; zero-length records; low template id.
        assert!(parse_template_flowset(&[1, 0, 0, 9, 0, 8, 0, 4])
            .error
            .is_some());
        assert!(parse_template_flowset(&template_body(256, &[(8, 0)]))
            .error
            .is_some());
        assert!(parse_template_flowset(&template_body(255, &[(8, 4)]))
            .error
            .is_some());
        assert!(parse_template_flowset(&template_body(256, &[(8, 0xFFFF)]))
            .error
            .is_some());
        assert!(
            parse_options_template_flowset(&[1, 0, 0, 3, 0, 4, 0, 0, 0, 0])
                .error
                .is_some()
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut b = bytes.clone();
            if b.len() >= 2 { b[0] = 0; b[1] = 9; }
            if let Ok(m) = parse_v9(&b) {
                for s in m.sets {
                    let _ = parse_template_flowset(s.body);
                    let _ = parse_options_template_flowset(s.body);
                }
            }
            let _ = parse_template_flowset(&bytes);
            let _ = parse_options_template_flowset(&bytes);
        }
    }
}
