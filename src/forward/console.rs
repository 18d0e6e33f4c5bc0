//! The admin console's pages, rendered on the server (sans-IO: data in, HTML out).
//!
//! Plain HTML forms work without JavaScript, so every change is a form POST that carries the session's CSRF
//! token; the one script (`console.js`, embedded) only refreshes the live call counts. No CDN, no inline script
//! or style, so the page runs under `Content-Security-Policy: default-src 'self'`.
use super::{CallerId, Catalog, FieldError, Forward};
use std::fmt::Write;

pub const CSS: &str = include_str!("console.css");
pub const JS: &str = include_str!("console.js");

/// The header every console page is served with.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · tollgate</title><link rel=\"stylesheet\" href=\"/assets/console.css\"></head>\
         <body>{body}</body></html>\n",
        esc(title)
    )
}

/// The sign-in page; `csrf` is also set as the `tg_login` cookie (double submit).
pub fn login(node: &str, csrf: &str, message: Option<&str>) -> String {
    let mut b = format!(
        "<main class=\"narrow\"><h1>tollgate <small>{}</small></h1><h2>Sign in</h2>",
        esc(node)
    );
    if let Some(m) = message {
        let _ = write!(
            b,
            "<p class=\"error\" id=\"message\" role=\"alert\">{}</p>",
            esc(m)
        );
    }
    let _ = write!(
        b,
        "<form method=\"post\" action=\"/login\" id=\"login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>User <input name=\"user\" id=\"user\" autocomplete=\"username\" required></label>\
         <label>Password <input name=\"password\" id=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required></label>\
         <button type=\"submit\" id=\"signin\">Sign in</button></form></main>",
        esc(csrf)
    );
    page("Sign in", &b)
}

/// A page that says what went wrong and offers a way back (no form: nothing to submit from here).
pub fn failure(node: &str, message: &str) -> String {
    let b = format!(
        "<header><h1>tollgate <small>{}</small></h1></header><main><p class=\"error\" id=\"message\" \
         role=\"alert\">{}</p><p><a href=\"/console\">Try again</a></p></main>",
        esc(node),
        esc(message)
    );
    page("Error", &b)
}

/// One trunk's live state for the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkLive {
    pub name: String,
    /// `None`: the signaling thread has not published yet.
    pub active_calls: Option<u32>,
    pub max_calls: Option<u32>,
}

/// Everything the console page shows.
pub struct ConsoleView<'a> {
    pub node: &'a str,
    pub user: &'a str,
    pub csrf: &'a str,
    pub catalog: &'a Catalog,
    pub forwards: &'a [Forward],
    pub trunks: &'a [TrunkLive],
    /// A change that was refused: what the operator typed is kept and every field error is listed.
    pub errors: &'a [FieldError],
    pub notice: Option<&'a str>,
}

fn caller_id_text(c: &CallerId) -> String {
    match c {
        CallerId::Keep => "original caller".into(),
        CallerId::Fixed(n) => n.clone(),
    }
}

fn options<'a>(items: impl Iterator<Item = &'a str>, selected: Option<&str>) -> String {
    let mut o = String::new();
    for i in items {
        let sel = if Some(i) == selected { " selected" } else { "" };
        let _ = write!(o, "<option value=\"{0}\"{sel}>{0}</option>", esc(i));
    }
    o
}

/// The console: numbers with their forward state, the add form, live calls per trunk.
pub fn console(v: &ConsoleView) -> String {
    let csrf = esc(v.csrf);
    let mut b = format!(
        "<header><h1>tollgate <small>{}</small></h1><form method=\"post\" action=\"/logout\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><span>{}</span> \
         <button type=\"submit\" id=\"signout\">Sign out</button></form></header><main>",
        esc(v.node),
        esc(v.user)
    );
    if let Some(n) = v.notice {
        let _ = write!(
            b,
            "<p class=\"notice\" id=\"notice\" role=\"status\">{}</p>",
            esc(n)
        );
    }
    if !v.errors.is_empty() {
        b.push_str("<ul class=\"error\" id=\"errors\" role=\"alert\">");
        for e in v.errors {
            let _ = write!(
                b,
                "<li data-field=\"{}\">{}: {}</li>",
                esc(e.field),
                esc(e.field),
                esc(&e.reason)
            );
        }
        b.push_str("</ul>");
    }
    b.push_str(
        "<h2>Numbers</h2><table id=\"numbers\"><thead><tr><th>Number</th><th>Forward</th><th>Trunk</th>\
         <th>Ring timeout</th><th>Caller ID</th><th>Fallback</th><th></th></tr></thead><tbody>",
    );
    for n in &v.catalog.numbers {
        let f = v.forwards.iter().find(|f| &f.number == n);
        let _ = write!(b, "<tr data-number=\"{0}\"><td>{0}</td>", esc(n));
        match f {
            Some(f) => {
                let state = if f.enabled { "" } else { " (disabled)" };
                let _ = write!(
                    b,
                    "<td class=\"fwd\">→ {}{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                     <td><form method=\"post\" action=\"/console/remove\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <input type=\"hidden\" name=\"number\" value=\"{}\">\
                     <button type=\"submit\" class=\"remove\">Remove forward</button></form></td>",
                    esc(&f.target),
                    esc(&f.trunk),
                    f.ring_timeout_s.map_or("—".into(), |t| format!("{t} s")),
                    esc(&caller_id_text(&f.caller_id)),
                    if f.fallback { "normal route" } else { "no" },
                    esc(&f.number),
                );
            }
            None => b.push_str(
                "<td class=\"fwd\">normal route</td><td></td><td></td><td></td><td></td><td></td>",
            ),
        }
        b.push_str("</tr>");
    }
    b.push_str("</tbody></table>");

    let free: Vec<&str> = v
        .catalog
        .numbers
        .iter()
        .filter(|n| !v.forwards.iter().any(|f| &f.number == *n))
        .map(String::as_str)
        .collect();
    b.push_str("<h2>Add a forward</h2>");
    if free.is_empty() {
        b.push_str("<p>Every number is forwarded; remove one to change it.</p>");
    } else {
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/console/add\" id=\"add\" class=\"grid\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label>Number <select name=\"number\" id=\"number\">{}</select></label>\
             <label>Forward to (E.164) <input name=\"target\" id=\"target\" placeholder=\"+442071838750\" \
             required></label>\
             <label>Trunk <select name=\"trunk\" id=\"trunk\">{}</select></label>\
             <label>Ring timeout (s) <input name=\"ring_timeout_s\" id=\"ring_timeout_s\" type=\"number\" \
             min=\"1\" max=\"{}\" value=\"30\"></label>\
             <label>Caller ID <select name=\"caller_id\" id=\"caller_id\">\
             <option value=\"keep\">original caller</option>{}</select></label>\
             <label><input type=\"checkbox\" name=\"fallback\" id=\"fallback\" value=\"1\"> \
             on failure, use the normal route</label>\
             <label><input type=\"checkbox\" name=\"enabled\" id=\"enabled\" value=\"1\" checked> enabled</label>\
             <button type=\"submit\" id=\"add_forward\">Add forward</button></form>",
            options(free.iter().copied(), None),
            options(v.catalog.trunks.iter().map(String::as_str), None),
            super::MAX_RING_TIMEOUT_S,
            options(v.catalog.numbers.iter().map(String::as_str), None),
        );
    }

    b.push_str(
        "<h2>Live calls</h2><table id=\"trunks\"><thead><tr><th>Trunk</th><th>Calls</th><th>Limit</th></tr>\
         </thead><tbody>",
    );
    for t in v.trunks {
        let _ = write!(
            b,
            "<tr data-trunk=\"{0}\"><td>{0}</td><td class=\"calls\">{1}</td><td>{2}</td></tr>",
            esc(&t.name),
            t.active_calls.map_or("—".into(), |c| c.to_string()),
            t.max_calls.map_or("—".into(), |c| c.to_string()),
        );
    }
    b.push_str(
        "</tbody></table><p><a href=\"/console/audit\">Audit log</a></p></main>\
         <script src=\"/assets/console.js\"></script>",
    );
    page("Console", &b)
}

/// The audit log page: who changed what, when, before and after.
pub fn audit(node: &str, entries: &[super::store::AuditEntry]) -> String {
    let mut b = format!(
        "<header><h1>tollgate <small>{}</small></h1></header><main><h2>Audit log</h2>\
         <p><a href=\"/console\">Back</a></p><table id=\"audit\"><thead><tr><th>When (UTC)</th><th>Who</th>\
         <th>Action</th><th>Number</th><th>Before</th><th>After</th></tr></thead><tbody>",
        esc(node)
    );
    let j = |f: &Option<Forward>| {
        f.as_ref()
            .map(|f| serde_json::to_string(f).unwrap_or_default())
            .unwrap_or_default()
    };
    for e in entries {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            esc(&utc(e.at)),
            esc(&e.who),
            esc(&e.action),
            esc(&e.number),
            esc(&j(&e.before)),
            esc(&j(&e.after)),
        );
    }
    b.push_str("</tbody></table></main>");
    page("Audit log", &b)
}

/// Seconds since the epoch as `2026-12-07 02:26:04`.
pub fn utc(at: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| at.to_string())
}

/// A forward from the add form's fields; what the form cannot express as a forward is a field error.
pub fn forward_from_form(fields: &[(String, String)]) -> Result<Forward, Vec<FieldError>> {
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim());
    let mut errs = Vec::new();
    let ring_timeout_s = match get("ring_timeout_s") {
        None | Some("") => None,
        Some(s) => match s.parse::<u32>() {
            Ok(t) => Some(t),
            Err(_) => {
                errs.push(FieldError {
                    field: "ring_timeout_s",
                    reason: format!("`{s}` is not a whole number of seconds"),
                });
                None
            }
        },
    };
    let caller_id = match get("caller_id") {
        None | Some("") | Some("keep") => CallerId::Keep,
        Some(n) => CallerId::Fixed(n.to_owned()),
    };
    let f = Forward {
        number: get("number").unwrap_or_default().to_owned(),
        target: get("target").unwrap_or_default().to_owned(),
        trunk: get("trunk").unwrap_or_default().to_owned(),
        ring_timeout_s,
        caller_id,
        fallback: get("fallback").is_some(),
        enabled: get("enabled").is_some(),
    };
    if errs.is_empty() { Ok(f) } else { Err(errs) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat() -> Catalog {
        Catalog {
            trunks: vec!["cloud".into(), "pstn".into()],
            numbers: vec!["+18005551234".into(), "+18005550000".into()],
        }
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_console_shows_state_forms_with_csrf_and_live_calls() {
        let fwd = Forward {
            number: "+18005551234".into(),
            target: "+442071838750".into(),
            trunk: "pstn".into(),
            ring_timeout_s: Some(30),
            caller_id: CallerId::Keep,
            fallback: true,
            enabled: true,
        };
        let html = console(&ConsoleView {
            node: "sbc<1>",
            user: "alice",
            csrf: "tok123",
            catalog: &cat(),
            forwards: std::slice::from_ref(&fwd),
            trunks: &[TrunkLive {
                name: "pstn".into(),
                active_calls: Some(3),
                max_calls: Some(100),
            }],
            errors: &[],
            notice: None,
        });
        assert!(html.contains("sbc&lt;1&gt;"), "node name escaped");
        assert!(html.contains("→ +442071838750"));
        // Every form carries the token: sign-out, one remove (one forward), add.
        assert_eq!(html.matches("name=\"csrf\" value=\"tok123\"").count(), 3);
        assert_eq!(html.matches("<form").count(), 3);
        // Only the unforwarded number is offered in the add form.
        let add = &html[html.find("id=\"add\"").unwrap()..];
        assert!(add.contains("<option value=\"+18005550000\">"));
        assert!(!add[..add.find("</select>").unwrap()].contains("+18005551234"));
        assert!(html.contains("<td class=\"calls\">3</td><td>100</td>"));
        assert!(!html.contains("<script>"), "no inline script under the CSP");
    }

    #[test]
    fn errors_are_listed_by_field() {
        let errs = [FieldError {
            field: "target",
            reason: "`1<2` is not an E.164 number".into(),
        }];
        let html = console(&ConsoleView {
            node: "n",
            user: "u",
            csrf: "t",
            catalog: &cat(),
            forwards: &[],
            trunks: &[],
            errors: &errs,
            notice: None,
        });
        assert!(
            html.contains("<li data-field=\"target\">target: `1&lt;2` is not an E.164 number</li>")
        );
    }

    #[test]
    fn the_add_form_maps_to_a_forward() {
        let f = forward_from_form(&pairs(&[
            ("csrf", "t"),
            ("number", "+18005551234"),
            ("target", " +442071838750 "),
            ("trunk", "pstn"),
            ("ring_timeout_s", "25"),
            ("caller_id", "+18005550000"),
            ("fallback", "1"),
        ]))
        .unwrap();
        assert_eq!(f.target, "+442071838750");
        assert_eq!(f.ring_timeout_s, Some(25));
        assert_eq!(f.caller_id, CallerId::Fixed("+18005550000".into()));
        assert!(f.fallback && !f.enabled);
        let f =
            forward_from_form(&pairs(&[("ring_timeout_s", ""), ("caller_id", "keep")])).unwrap();
        assert_eq!((f.ring_timeout_s, f.caller_id), (None, CallerId::Keep));
        let e = forward_from_form(&pairs(&[("ring_timeout_s", "soon")])).unwrap_err();
        assert_eq!(e[0].field, "ring_timeout_s");
    }

    #[test]
    fn the_login_page_carries_its_token_and_escapes_the_message() {
        let html = login("edge-1", "abc", Some("<locked>"));
        assert!(html.contains("name=\"csrf\" value=\"abc\""));
        assert!(html.contains("&lt;locked&gt;"));
    }
}
