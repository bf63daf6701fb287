//! Reading a gathered `text/event-stream` body (WHATWG HTML §9.2 event stream format):
//! enough to pull JSON-RPC messages out of an upstream MCP server's SSE answer when the
//! gateway must translate it rather than relay it.

/// Calls `f` with the data of each event (multiple `data:` lines joined with `\n`).
pub fn for_each_event(body: &[u8], mut f: impl FnMut(&[u8])) {
    let mut data: Vec<u8> = Vec::new();
    let mut has_data = false;
    for raw in body.split(|b| *b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            if has_data {
                f(&data);
            }
            data.clear();
            has_data = false;
            continue;
        }
        if line.starts_with(b":") {
            continue;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if has_data {
                data.push(b'\n');
            }
            data.extend_from_slice(value);
            has_data = true;
        }
    }
    if has_data {
        f(&data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events() {
        let body = b": comment\nevent: message\ndata: {\"a\":1}\n\nid: 2\ndata: line1\r\ndata:line2\r\n\r\ndata: tail";
        let mut seen = Vec::new();
        for_each_event(body, |d| seen.push(String::from_utf8_lossy(d).into_owned()));
        assert_eq!(seen, ["{\"a\":1}", "line1\nline2", "tail"]);
    }
}
