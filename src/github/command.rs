//! `/maur <verb> [instructions]` in a comment. Only a line that starts with the command
//! counts; quoted replies (`> /maur fix`) and code blocks quoting the command don't, so
//! someone explaining maur in a comment does not start work.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start work; the text after the verb (and the lines after it) are instructions.
    Fix(String),
    Cancel,
    Retry,
    Status,
    Help,
    /// `/maur something-else`: answered with help.
    Unknown(String),
}

/// The first command in `body`, if any. `prefix` is `MAUR_COMMAND` (`/maur`), matched
/// case-insensitively and only as a whole word.
pub fn parse(body: &str, prefix: &str) -> Option<Command> {
    let all: Vec<&str> = body.lines().collect();
    let visible = visible_lines(body);
    for (n, &(i, line)) in visible.iter().enumerate() {
        let Some(rest) = after_prefix(line, prefix) else {
            continue;
        };
        // Instructions run on below the command line, code blocks included, up to the next
        // command.
        let end = visible[n + 1..]
            .iter()
            .find(|(_, l)| after_prefix(l, prefix).is_some())
            .map_or(all.len(), |(j, _)| *j);
        let below = &all[i + 1..end];
        let (verb, args) = match rest.split_once(char::is_whitespace) {
            Some((verb, args)) => (verb, args.trim()),
            None => (rest, ""),
        };
        let command = match verb.to_ascii_lowercase().as_str() {
            "" | "help" => Command::Help,
            "fix" => {
                let mut text = args.to_owned();
                for next in below {
                    text.push('\n');
                    text.push_str(next);
                }
                Command::Fix(text.trim().to_owned())
            }
            "cancel" | "stop" => Command::Cancel,
            "retry" => Command::Retry,
            "status" => Command::Status,
            other => Command::Unknown(other.chars().take(40).collect()),
        };
        return Some(command);
    }
    None
}

/// What follows `prefix` at the start of `line` (up to three spaces of indent, as Markdown
/// allows before it becomes a code block), when the prefix is a whole word.
fn after_prefix<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let line = line.trim_start_matches(' ');
    let head = line.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = &line[prefix.len()..];
    match rest.chars().next() {
        None => Some(""),
        Some(c) if c.is_whitespace() => Some(rest.trim()),
        Some(_) => None,
    }
}

/// The comment's lines outside fenced code blocks and block quotes, with their numbers.
fn visible_lines(body: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<String> = None;
    let mut out = Vec::new();
    for (i, line) in body.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker: String = trimmed
            .chars()
            .take_while(|c| *c == '`' || *c == '~')
            .collect();
        match &fence {
            Some(open) => {
                if marker.len() >= open.len()
                    && marker.starts_with(open.chars().next().unwrap_or('`'))
                    && trimmed[marker.len()..].trim().is_empty()
                {
                    fence = None;
                }
            }
            None if marker.len() >= 3
                && marker.chars().all(|c| c == marker.as_bytes()[0] as char) =>
            {
                fence = Some(marker);
            }
            None if trimmed.starts_with('>') => {}
            None => out.push((i, line)),
        }
    }
    out
}

/// The reply to `/maur help` (and to an unknown verb).
pub fn help(prefix: &str, label: &str) -> String {
    format!(
        "**maur** turns this issue into a pull request. Commands (people with write access):\n\n\
         - `{prefix} fix [instructions]`: start work (on a pull request: push a new commit to its branch)\n\
         - `{prefix} cancel`: stop the running task\n\
         - `{prefix} retry`: run the last task again\n\
         - `{prefix} status`: show where the task is\n\
         - `{prefix} help`: this message\n\n\
         Adding the `{label}` label to an issue is the same as `{prefix} fix`."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(body: &str) -> Option<Command> {
        parse(body, "/maur")
    }

    #[test]
    fn verbs_and_instructions() {
        assert_eq!(p("/maur fix"), Some(Command::Fix(String::new())));
        assert_eq!(
            p("/maur fix the off-by-one\nin pager.rs please\n"),
            Some(Command::Fix("the off-by-one\nin pager.rs please".into()))
        );
        assert_eq!(p("/MAUR Fix it"), Some(Command::Fix("it".into())));
        assert_eq!(p("/maur cancel"), Some(Command::Cancel));
        assert_eq!(p("/maur retry"), Some(Command::Retry));
        assert_eq!(p("/maur status"), Some(Command::Status));
        assert_eq!(p("/maur help"), Some(Command::Help));
        assert_eq!(p("/maur"), Some(Command::Help));
        assert_eq!(
            p("/maur frobnicate"),
            Some(Command::Unknown("frobnicate".into()))
        );
        assert_eq!(
            p("Thanks!\n\n/maur fix\r\nuse the new API"),
            Some(Command::Fix("use the new API".into()))
        );
        assert_eq!(parse("!bot fix x", "!bot"), Some(Command::Fix("x".into())));
    }

    #[test]
    fn only_a_line_that_starts_with_the_command_counts() {
        assert_eq!(p("please run /maur fix"), None);
        assert_eq!(p("/maurfix"), None);
        assert_eq!(p("/maur-bot fix"), None);
        assert_eq!(p("    /maur fix"), None, "indented code");
        assert_eq!(p("   /maur fix"), Some(Command::Fix(String::new())));
    }

    #[test]
    fn quotes_and_code_blocks_do_not_trigger() {
        assert_eq!(p("> /maur fix\n\nI agree"), None);
        assert_eq!(p("Try:\n```\n/maur fix\n```\n"), None);
        assert_eq!(p("~~~md\n/maur fix\n~~~"), None);
        assert_eq!(p("````\n```\n/maur fix\n```\n````"), None, "nested fence");
        assert_eq!(
            p("```\n/maur help\n```\n/maur status"),
            Some(Command::Status),
            "after the fence closes"
        );
        assert_eq!(
            p("/maur fix a\n> quoted\nb"),
            Some(Command::Fix("a\n> quoted\nb".into()))
        );
        assert_eq!(
            p("/maur fix use this:\n```rust\nfn page() {}\n```\nthanks"),
            Some(Command::Fix(
                "use this:\n```rust\nfn page() {}\n```\nthanks".into()
            )),
            "code the person pasted stays in the instructions"
        );
    }

    #[test]
    fn instructions_stop_at_the_next_command() {
        assert_eq!(
            p("/maur fix a\n/maur status"),
            Some(Command::Fix("a".into()))
        );
    }
}
