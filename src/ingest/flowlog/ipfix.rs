//! IPFIX (RFC 7011).
//!
//! Message header, 16 bytes (§3.1): version u16 (=10) @0, length u16 @2 (whole message),
//! export time u32 (Unix seconds) @4, sequence number u32 @8 (data records sent before this
//! message in this observation domain, modulo 2^32), observation domain id u32 @12. Then Sets
//! (§3.3): `set id u16, length u16` (header included): 2 = template set, 3 = options template
//! set, >= 256 = data set of that template; 4..=255 reserved (skipped).
//!
//! Template record (§3.4.1): template id u16 (>= 256), field count u16, field specifiers.
//! Options template record (§3.4.2.2): template id, field count, scope field count u16 (>= 1),
//! field specifiers (scope first). Field specifier (§3.2): information element id u16 whose top
//! bit is the enterprise bit, field length u16 (65535 = variable length, §7), then a u32
//! enterprise number when the bit is set. A record with field count 0 withdraws its template
//! (§8.1); template id 2 (template set) or 3 (options set) with count 0 withdraws all.
//! Templates are kept per (transport session = exporter address and port, observation domain).

use super::netflow_v9::{split_sets, RawSet};
use super::templates::{FieldSpec, Template, TemplateEvent, TemplateSet};
use super::{be_u16, be_u32, ParseError};

pub const HEADER_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpfixHeader {
    pub length: u16,
    pub export_secs: u32,
    pub sequence: u32,
    pub domain: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpfixMessage<'a> {
    pub header: IpfixHeader,
    pub sets: Vec<RawSet<'a>>,
    pub error: Option<ParseError>,
}

/// Parses the message header (checking the declared length against the datagram) and splits
/// the Sets. Bytes past the declared length are ignored.
pub fn parse_ipfix(bytes: &[u8]) -> Result<IpfixMessage<'_>, ParseError> {
    let trunc = ParseError::Truncated {
        what: "ipfix header",
        need: HEADER_LEN,
        have: bytes.len(),
    };
    let version = be_u16(bytes, 0).ok_or(trunc.clone())?;
    if version != 10 {
        return Err(ParseError::Version(version));
    }
    let header = IpfixHeader {
        length: be_u16(bytes, 2).ok_or(trunc.clone())?,
        export_secs: be_u32(bytes, 4).ok_or(trunc.clone())?,
        sequence: be_u32(bytes, 8).ok_or(trunc.clone())?,
        domain: be_u32(bytes, 12).ok_or(trunc)?,
    };
    let len = usize::from(header.length);
    if len < HEADER_LEN || len > bytes.len() {
        return Err(ParseError::Length {
            what: "ipfix message",
            declared: len,
            available: bytes.len(),
        });
    }
    let (sets, error) = split_sets(bytes.get(HEADER_LEN..len).unwrap_or(&[]), "ipfix set");
    Ok(IpfixMessage {
        header,
        sets,
        error,
    })
}

/// Parses `n` field specifiers; returns them and the bytes used.
fn field_specs(bytes: &[u8], n: usize) -> Option<(Vec<FieldSpec>, usize)> {
    let mut out = Vec::with_capacity(n.min(bytes.len() / 4));
    let mut at = 0usize;
    for _ in 0..n {
        let raw_id = be_u16(bytes, at)?;
        let length = be_u16(bytes, at + 2)?;
        at += 4;
        let enterprise = if raw_id & 0x8000 != 0 {
            let pen = be_u32(bytes, at)?;
            at += 4;
            Some(pen)
        } else {
            None
        };
        out.push(FieldSpec {
            id: raw_id & 0x7FFF,
            enterprise,
            length,
        });
    }
    Some((out, at))
}

/// Parses a template set (id 2) or options template set (id 3) body.
pub fn parse_template_set(mut body: &[u8], options: bool) -> TemplateSet {
    let set_id: u16 = if options { 3 } else { 2 };
    let mut set = TemplateSet::default();
    while body.len() >= 4 {
        let id = be_u16(body, 0).unwrap_or(0);
        let n = usize::from(be_u16(body, 2).unwrap_or(0));
        if n == 0 {
            if id == 0 {
                break; // padding
            }
            set.events.push(if id == set_id {
                TemplateEvent::WithdrawAll
            } else {
                TemplateEvent::Withdraw(id)
            });
            body = body.get(4..).unwrap_or(&[]);
            continue;
        }
        let (scope_fields, head) = if options {
            let Some(s) = be_u16(body, 4) else {
                set.error = Some(ParseError::Truncated {
                    what: "ipfix options template",
                    need: 6,
                    have: body.len(),
                });
                break;
            };
            (s, 6)
        } else {
            (0, 4)
        };
        let Some((fields, used)) = field_specs(body.get(head..).unwrap_or(&[]), n) else {
            set.error = Some(ParseError::Truncated {
                what: "ipfix template",
                need: head + 4 * n,
                have: body.len(),
            });
            break;
        };
        body = body.get(head + used..).unwrap_or(&[]);
        if options && (scope_fields == 0 || usize::from(scope_fields) > n) {
            set.error = Some(ParseError::Template("options template scope count"));
            continue;
        }
        let t = Template {
            id,
            scope_fields,
            options,
            fields,
        };
        match t.check() {
            Ok(()) => set.events.push(TemplateEvent::Define(t)),
            Err(e) => set.error = Some(e),
        }
    }
    set
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An IPFIX message from Sets laid out per RFC 7011 §3.
    pub(crate) fn ipfix_message(seq: u32, domain: u32, sets: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (id, b) in sets {
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&((b.len() + 4) as u16).to_be_bytes());
            body.extend_from_slice(b);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&10u16.to_be_bytes());
        m.extend_from_slice(&((body.len() + HEADER_LEN) as u16).to_be_bytes());
        m.extend_from_slice(&1_700_000_020u32.to_be_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(&domain.to_be_bytes());
        m.extend_from_slice(&body);
        m
    }

    /// Template record; fields `(id, length, enterprise)`.
    pub(crate) fn template_record(
        id: u16,
        scope: Option<u16>,
        fields: &[(u16, u16, Option<u32>)],
    ) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&(fields.len() as u16).to_be_bytes());
        if let Some(s) = scope {
            b.extend_from_slice(&s.to_be_bytes());
        }
        for &(f, l, e) in fields {
            let raw = if e.is_some() { f | 0x8000 } else { f };
            b.extend_from_slice(&raw.to_be_bytes());
            b.extend_from_slice(&l.to_be_bytes());
            if let Some(e) = e {
                b.extend_from_slice(&e.to_be_bytes());
            }
        }
        b
    }

    #[test]
    fn header_sets_and_enterprise_fields() {
        let t = template_record(256, None, &[(8, 4, None), (100, 2, Some(9)), (12, 4, None)]);
        let m = ipfix_message(11, 3, &[(2, t)]);
        let msg = parse_ipfix(&m).unwrap();
        assert_eq!((msg.header.sequence, msg.header.domain), (11, 3));
        let ts = parse_template_set(msg.sets[0].body, false);
        assert_eq!(ts.error, None);
        let TemplateEvent::Define(t) = &ts.events[0] else {
            panic!("not a definition")
        };
        assert_eq!(
            t.fields[1],
            FieldSpec {
                id: 100,
                enterprise: Some(9),
                length: 2
            }
        );
        assert_eq!(t.min_record_len(), 10);
    }

    #[test]
    fn withdrawals_and_options() {
        let mut body = vec![1, 0, 0, 0, 0, 2, 0, 0];
        let ts = parse_template_set(&body, false);
        assert_eq!(
            ts.events,
            vec![TemplateEvent::Withdraw(256), TemplateEvent::WithdrawAll]
        );
        body.extend_from_slice(&template_record(
            257,
            Some(1),
            &[(143, 4, None), (160, 8, None)],
        ));
        let ts = parse_template_set(&body, true);
        assert_eq!(ts.events.len(), 3);
        let TemplateEvent::Define(t) = &ts.events[2] else {
            panic!("not a definition")
        };
        assert!(t.options);
        assert_eq!(t.scope_fields, 1);
        // Scope count larger than the field count.
        assert!(
            parse_template_set(&template_record(258, Some(5), &[(143, 4, None)]), true)
                .error
                .is_some()
        );
    }

    #[test]
    fn malformed_messages() {
        let mut m = ipfix_message(0, 0, &[(2, template_record(256, None, &[(8, 4, None)]))]);
        assert!(matches!(
            parse_ipfix(&m[..m.len() - 1]),
            Err(ParseError::Length { .. })
        ));
        m[3] = 8; // declared length below the header
        assert!(matches!(parse_ipfix(&m), Err(ParseError::Length { .. })));
        assert_eq!(parse_ipfix(&[0, 9, 0, 0]), Err(ParseError::Version(9)));
        // Enterprise bit set but the enterprise number is cut off.
        assert!(parse_template_set(&[1, 0, 0, 1, 0x80, 1, 0, 4, 0], false)
            .error
            .is_some());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut b = bytes.clone();
            if b.len() >= 4 { b[0] = 0; b[1] = 10; let l = b.len() as u16; b[2..4].copy_from_slice(&l.to_be_bytes()); }
            if let Ok(m) = parse_ipfix(&b) {
                for s in m.sets {
                    let _ = parse_template_set(s.body, s.id == 3);
                }
            }
            let _ = parse_template_set(&bytes, false);
            let _ = parse_template_set(&bytes, true);
        }
    }
}
