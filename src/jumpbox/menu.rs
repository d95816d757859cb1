//! Pure pieces of the jumpbox dialogue: the login name (`alice+myinst`),
//! the instance menu (`序号 实例名称-容器ID-算力节点`), the choice typed at
//! it, and a line editor for a raw terminal.

/// `alice+myinst` → (`alice`, Some(`myinst`)); `alice` → (`alice`, None).
pub fn split_login(login: &str) -> (&str, Option<&str>) {
    match login.split_once('+') {
        Some((user, target)) if !target.is_empty() => (user, Some(target)),
        Some((user, _)) => (user, None),
        None => (login, None),
    }
}

/// The instance a login names among `(id, name)`s: by name when it is
/// unique, else by id; otherwise what to tell the user.
pub fn find<I: std::fmt::Display>(items: &[(I, &str)], target: &str) -> Result<usize, String> {
    let by_name: Vec<usize> = (0..items.len()).filter(|&n| items[n].1 == target).collect();
    if let [one] = by_name.as_slice() {
        return Ok(*one);
    }
    if let Some(n) = items.iter().position(|(id, _)| id.to_string() == target) {
        return Ok(n);
    }
    if by_name.is_empty() {
        return Err(format!(
            "no running instance named \"{target}\" that you can reach (没有可访问的运行中实例 \"{target}\")"
        ));
    }
    let ids: Vec<String> = by_name.iter().map(|&n| items[n].0.to_string()).collect();
    Err(format!(
        "several of your instances are named \"{target}\"; name one by its id: user+ID ({}) (多个实例同名，请使用实例 ID)",
        ids.join(", ")
    ))
}

/// One menu entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub container_id: String,
    pub node: String,
}

/// The menu lines, numbered from 1: `序号 实例名称-容器ID-算力节点` with the
/// container ID shortened to 12 characters. Names are users' text: their
/// control characters are shown escaped, never sent to the terminal.
pub fn menu_lines(entries: &[Entry]) -> Vec<String> {
    use crate::escape::for_terminal;
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let short = e.container_id.get(..12).unwrap_or(&e.container_id);
            let (name, id, node) = (
                for_terminal(&e.name),
                for_terminal(short),
                for_terminal(&e.node),
            );
            format!("{} {name}-{id}-{node}", i + 1)
        })
        .collect()
}

/// What a line typed at the menu means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Pick(usize),
    Quit,
    Invalid,
}

pub fn choice(line: &str, entries: usize) -> Choice {
    let t = line.trim();
    if t.eq_ignore_ascii_case("q")
        || t.eq_ignore_ascii_case("quit")
        || t.eq_ignore_ascii_case("exit")
    {
        return Choice::Quit;
    }
    match t.parse::<usize>() {
        Ok(n) if (1..=entries).contains(&n) => Choice::Pick(n - 1),
        _ => Choice::Invalid,
    }
}

/// Collects one line from raw terminal input, giving back what to echo.
#[derive(Debug, Default)]
pub struct LineEditor {
    line: String,
}

/// The result of feeding bytes to the editor.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// Bytes to send back so the user sees what they type.
    pub echo: Vec<u8>,
    /// A finished line (Enter), or `Some("q")` for Ctrl-C / Ctrl-D.
    pub line: Option<String>,
    /// What came after the line's end (typed ahead: input for the session).
    pub rest: Vec<u8>,
}

impl LineEditor {
    pub fn feed(&mut self, bytes: &[u8]) -> Fed {
        let mut fed = Fed::default();
        for (at, &b) in bytes.iter().enumerate() {
            match b {
                b'\r' | b'\n' => {
                    fed.echo.extend_from_slice(b"\r\n");
                    fed.line = Some(std::mem::take(&mut self.line));
                    // `\r\n` ends one line, not two.
                    let skip = usize::from(b == b'\r' && bytes.get(at + 1) == Some(&b'\n'));
                    fed.rest = bytes[at + 1 + skip..].to_vec();
                    return fed;
                }
                0x03 | 0x04 => {
                    fed.echo.extend_from_slice(b"\r\n");
                    fed.line = Some("q".into());
                    return fed;
                }
                0x7f | 0x08 if self.line.pop().is_some() => {
                    fed.echo.extend_from_slice(b"\x08 \x08");
                }
                b if (b.is_ascii_graphic() || b == b' ') && self.line.len() < 64 => {
                    self.line.push(b as char);
                    fed.echo.push(b);
                }
                _ => {}
            }
        }
        fed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_name_a_user_and_maybe_a_target() {
        assert_eq!(split_login("alice+myinst"), ("alice", Some("myinst")));
        assert_eq!(split_login("alice"), ("alice", None));
        assert_eq!(split_login("alice+"), ("alice", None));
        assert_eq!(split_login("alice+a+b"), ("alice", Some("a+b")));
    }

    #[test]
    fn targets_are_names_when_unique_else_ids() {
        let items = [(3, "train"), (4, "dev"), (7, "dev")];
        assert_eq!(find(&items, "train"), Ok(0));
        assert_eq!(find(&items, "7"), Ok(2));
        let e = find(&items, "dev").unwrap_err();
        assert!(e.contains("several") && e.contains("4, 7"), "{e}");
        assert!(
            find(&items, "nope")
                .unwrap_err()
                .contains("no running instance named")
        );
    }

    #[test]
    fn the_menu_has_the_documented_format() {
        let e = vec![
            Entry {
                name: "train".into(),
                container_id: "0123456789abcdef0123".into(),
                node: "gpu-01".into(),
            },
            Entry {
                name: "dev".into(),
                container_id: "fedcba".into(),
                node: "gpu-02".into(),
            },
        ];
        assert_eq!(
            menu_lines(&e),
            ["1 train-0123456789ab-gpu-01", "2 dev-fedcba-gpu-02"]
        );
        // A name written before names were checked cannot drive the terminal.
        let evil = Entry {
            name: "x\x1b[2J\x1b[Hroot@gpu:~# \x07".into(),
            container_id: "abc".into(),
            node: "n\r\n".into(),
        };
        assert_eq!(
            menu_lines(&[evil]),
            ["1 x\\x1b[2J\\x1b[Hroot@gpu:~# \\x07-abc-n\\x0d\\x0a"]
        );
        assert_eq!(choice(" 2 ", 2), Choice::Pick(1));
        assert_eq!(choice("3", 2), Choice::Invalid);
        assert_eq!(choice("0", 2), Choice::Invalid);
        assert_eq!(choice("q", 2), Choice::Quit);
    }

    #[test]
    fn the_editor_echoes_edits_and_ends_lines() {
        let mut ed = LineEditor::default();
        let f = ed.feed(b"12\x7f3");
        assert_eq!(f.echo, b"12\x08 \x083");
        assert_eq!(f.line, None);
        let f = ed.feed(b"\r");
        assert_eq!(f.line.as_deref(), Some("13"));
        let f = ed.feed(b"2\r\nhostname\n");
        assert_eq!(
            (f.line.as_deref(), f.rest.as_slice()),
            (Some("2"), &b"hostname\n"[..])
        );
        assert_eq!(ed.feed(b"\x03").line.as_deref(), Some("q"));
    }
}
