//! One line of CSV (RFC 4180 quoting, no line breaks inside quotes), for the small CSV inputs
//! tunnelwatch reads itself: event calendars and flow tables. (nfdump's CSV never quotes and is
//! split on commas where it is read.)

/// Splits one CSV line into fields (RFC 4180 quoting, no line breaks inside quotes).
pub fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut in_quotes = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == ',' {
            fields.push(std::mem::take(&mut cur));
            was_quoted = false;
        } else if c == '"' {
            if was_quoted || !cur.trim().is_empty() {
                return Err(format!(
                    "field {}: a quote may only open a field",
                    fields.len() + 1
                ));
            }
            cur.clear();
            in_quotes = true;
            was_quoted = true;
        } else if was_quoted && !c.is_whitespace() {
            return Err(format!(
                "field {}: text after the closing quote",
                fields.len() + 1
            ));
        } else {
            cur.push(c);
        }
    }
    if in_quotes {
        return Err(format!("field {}: unterminated quote", fields.len() + 1));
    }
    fields.push(cur);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_rules() {
        assert_eq!(
            split_csv_line("a,\"b,c\",\"d\"\"e\",").expect("valid"),
            vec!["a", "b,c", "d\"e", ""]
        );
        assert!(split_csv_line("a,\"open").is_err());
        assert!(split_csv_line("a,b\"c").is_err());
        assert!(split_csv_line("\"a\"b").is_err());
    }
}
