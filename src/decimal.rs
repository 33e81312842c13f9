//! Decimal digits of integers without the formatting machinery: flow rows and their evidence
//! are written for every flow, and `write!` costs several times the digits themselves.

/// The decimal digits of `v` (no sign, no padding), written into the end of `buf`.
pub fn digits(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[at..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ends_of_the_range() {
        for v in [0, 9, 10, 99, 100, u64::MAX] {
            let mut buf = [0; 20];
            assert_eq!(digits(v, &mut buf), v.to_string().as_bytes());
        }
    }

    proptest! {
        #[test]
        fn digits_match_display(v in any::<u64>()) {
            let (mut buf, shown) = ([0; 20], v.to_string());
            prop_assert_eq!(digits(v, &mut buf), shown.as_bytes());
        }
    }
}
