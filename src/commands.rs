//! What the configuration accepts as a command to run (`syncerScript`,
//! `createRepositoryScript`) and its arguments (`syncerScriptArgs`): an
//! executable file whose `#!` interpreter exists, and words split as a
//! POSIX shell splits them, without expanding anything. Running commands is
//! `process`'s business.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error;

/// How much of a bad interpreter name a message quotes.
const EXCERPT: usize = 120;

/// `path`, when it is a file picture-book can run (a script's interpreter
/// must exist too).
pub fn executable(path: &Path) -> Result<PathBuf, String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("{} does not exist", path.display()))
        }
        Err(e) => Err(format!("cannot use {}: {e}", path.display())),
        Ok(m) if !m.is_file() => Err(format!("{} is not a file", path.display())),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err(format!(
            "{} is not executable (chmod +x it)",
            path.display()
        )),
        Ok(_) => check_runnable(path)
            .map(|_| path.to_path_buf())
            .map_err(|problem| format!("{} cannot run: {problem}", path.display())),
    }
}

/// Whether the system can start `script`: it exists, and the interpreter
/// its `#!` line names exists and can run (a script saved with CRLF line
/// ends names one whose name ends in a carriage return). A script without
/// a `#!` line is run by `/bin/sh`, as execvp(3) and shells do.
pub fn check_runnable(script: &Path) -> Result<(), String> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(script)
        .and_then(|f| f.take(512).read_to_end(&mut head))
        .map_err(|e| format!("cannot read it: {e}"))?;
    let Some(line) = head.strip_prefix(b"#!") else {
        return Ok(());
    };
    let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.trim_start_matches([' ', '\t']).split([' ', '\t']);
    let interpreter = words.next().unwrap_or_default();
    if line.ends_with('\r') {
        return Err(format!(
            "its first line ends in a carriage return (the file has CRLF line ends), so its interpreter is '{}', which does not exist; convert it with dos2unix or sed -i 's/\\r$//'",
            error::excerpt(interpreter, EXCERPT)
        ));
    }
    let shown = error::excerpt(interpreter, EXCERPT);
    match std::fs::metadata(interpreter) {
        Err(_) => {
            return Err(format!(
                "its interpreter {shown} (on its #! line) does not exist"
            ));
        }
        Ok(m) if !m.is_file() || !is_executable(&m) => {
            return Err(format!(
                "its interpreter {shown} (on its #! line) is not an executable file"
            ));
        }
        Ok(_) => {}
    }
    let program = words.find(|w| !w.is_empty() && !w.starts_with('-'));
    match program {
        Some(p) if interpreter.ends_with("/env") && !p.contains('=') && !on_path(p) => {
            Err(format!(
                "its interpreter {} (run by {shown} on its #! line) is not on PATH",
                error::excerpt(p, EXCERPT)
            ))
        }
        _ => Ok(()),
    }
}

fn is_executable(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o111 != 0
}

/// Whether `program` is a path to, or the name on `PATH` of, an executable.
fn on_path(program: &str) -> bool {
    let runnable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && is_executable(&m));
    if program.contains('/') {
        return runnable(Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| runnable(&dir.join(program))))
}

/// The longest `syncerScriptArgs` accepted, well below what the system lets
/// a program be given.
pub const MAX_ARGS_LEN: usize = 64 << 10;

/// Checks that `words` can be given to a program: no NUL characters, and
/// not longer in all than [`MAX_ARGS_LEN`].
pub fn check_args(words: Vec<String>) -> Result<Vec<String>, String> {
    let len: usize = words.iter().map(|w| w.len() + 1).sum();
    if len > MAX_ARGS_LEN {
        Err(format!(
            "{len} bytes of arguments; at most {MAX_ARGS_LEN} are accepted"
        ))
    } else if words.iter().any(|w| w.contains('\0')) {
        Err("contains a NUL character, which no argument can hold".into())
    } else {
        Ok(words)
    }
}

/// Splits `text` into words as a POSIX shell does, without expanding anything:
/// blanks separate words, single quotes keep everything literally, double
/// quotes keep everything but `\"`, `\\`, `\$` and `` \` ``, and a backslash
/// outside quotes keeps the next character.
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err("backslash at the end".into()),
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("   ", &[]),
            ("a b  c", &["a", "b", "c"]),
            ("--channel \"stable 2\"", &["--channel", "stable 2"]),
            ("--x='a b' c", &["--x=a b", "c"]),
            ("'it''s'", &["its"]),
            (r#""say \"hi\"""#, &["say \"hi\""]),
            (r#""a\nb""#, &["a\\nb"]),
            (r"a\ b", &["a b"]),
            ("''", &[""]),
            ("a\"\"b", &["ab"]),
            ("$HOME *", &["$HOME", "*"]),
            ("a\\\nb", &["ab"]),
            ("\ta\n b", &["a", "b"]),
        ];
        for (input, want) in cases {
            assert_eq!(split_words(input).unwrap(), *want, "{input:?}");
        }
    }

    #[test]
    fn unbalanced_quotes_are_errors() {
        assert_eq!(
            split_words("'abc").unwrap_err(),
            "unterminated single quote"
        );
        assert_eq!(
            split_words("\"abc").unwrap_err(),
            "unterminated double quote"
        );
        assert_eq!(split_words("abc\\").unwrap_err(), "backslash at the end");
    }
}
