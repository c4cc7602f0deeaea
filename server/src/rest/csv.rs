//! CSV request bodies (`Content-Type: text/csv`) for inserts.
//!
//! RFC 4180: comma separated, `"` quoted with `""` as escaped quote, `\n` or `\r\n` line
//! ends, the first line names the columns. As in PostgREST an unquoted `NULL` is SQL NULL.
//! The rows are turned into a JSON array of objects with string values, which
//! `json_populate_recordset` converts to the column types.

use serde_json::{Map, Value};

use super::error::RestError;

/// Parses a CSV document into rows of fields (`None` for an unquoted `NULL`).
pub(crate) fn parse_csv(text: &str) -> Result<Vec<Vec<Option<String>>>, RestError> {
    let mut rows = Vec::new();
    let mut row: Vec<Option<String>> = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !quoted => {
                quoted = true;
                in_quotes = true;
            }
            '"' => {
                return Err(RestError::body(
                    "Invalid CSV: unexpected '\"' inside an unquoted field",
                ));
            }
            ',' => row.push(finish(&mut field, &mut quoted)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(finish(&mut field, &mut quoted));
                rows.push(std::mem::take(&mut row));
                any = false;
            }
            c => {
                if quoted {
                    return Err(RestError::body("Invalid CSV: text after a closing quote"));
                }
                field.push(c);
            }
        }
    }
    if in_quotes {
        return Err(RestError::body("Invalid CSV: unterminated quoted field"));
    }
    if any {
        row.push(finish(&mut field, &mut quoted));
        rows.push(row);
    }
    Ok(rows)
}

fn finish(field: &mut String, quoted: &mut bool) -> Option<String> {
    let f = std::mem::take(field);
    let was_quoted = std::mem::replace(quoted, false);
    if !was_quoted && f == "NULL" {
        None
    } else {
        Some(f)
    }
}

/// Converts a CSV body into a JSON array of objects (all values strings or null).
pub(crate) fn csv_to_json(text: &str) -> Result<Value, RestError> {
    let rows = parse_csv(text)?;
    let mut it = rows.into_iter();
    let Some(header) = it.next() else {
        return Ok(Value::Array(Vec::new()));
    };
    let header: Vec<String> = header.into_iter().map(Option::unwrap_or_default).collect();
    let mut out = Vec::new();
    for (i, r) in it.enumerate() {
        if r.len() != header.len() {
            return Err(RestError::body(format!(
                "Invalid CSV: line {} has {} fields, the header has {}",
                i + 2,
                r.len(),
                header.len()
            )));
        }
        let mut obj = Map::new();
        for (k, v) in header.iter().zip(r) {
            obj.insert(k.clone(), v.map_or(Value::Null, Value::String));
        }
        out.push(Value::Object(obj));
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let v = csv_to_json("id,name,note\r\n1,\"a, \"\"b\"\"\",NULL\n2,x,\"NULL\"\n").unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"id":"1","name":"a, \"b\"","note":null},
                {"id":"2","name":"x","note":"NULL"}
            ])
        );
        assert!(csv_to_json("a,b\n1\n").is_err());
        assert!(csv_to_json("a\n\"x").is_err());
        assert_eq!(csv_to_json("").unwrap(), serde_json::json!([]));
    }
}
