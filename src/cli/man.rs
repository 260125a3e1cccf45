//! `appliance man DIR` (hidden from `--help`): writes the manual pages, rendered from the clap
//! definitions in [`super::args`] so they cannot drift from the command line they describe.
//!
//! Layer: CLI edge, run at packaging time (`scripts/test-deb.sh`, packaging/README.md): one
//! page per visible command, `appliance.1`, `appliance-serve.1`, `appliance-peer.1`,
//! `appliance-peer-add.1`, …, each ending with a SEE ALSO section that names its parent, its
//! subcommands and the installed documentation. cargo-deb installs them gzipped into
//! `/usr/share/man/man1/`. Hidden commands (this one) get no page and no mention.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

use super::args::Cli;
use super::{fatal, usage, Failure};

/// Where the .deb installs the documentation the pages point to.
const DOC_DIR: &str = "/usr/share/doc/appliance";

/// One rendered page: its file name (`appliance-peer-add.1`) and its roff text.
pub struct Page {
    pub file_name: String,
    pub roff: Vec<u8>,
}

/// Renders the page of every visible command, the top-level one first.
pub fn pages() -> Vec<Page> {
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let source = format!("appliance {}", root.get_version().unwrap_or_default());
    let mut out = Vec::new();
    render(&root, None, &source, &mut out);
    out
}

/// The page of `cmd` (already built, so subcommands carry their `appliance-…` display names),
/// then those of its visible subcommands. The top-level `after_help` (the exit codes) becomes
/// the EXIT STATUS section rather than clap_mangen's EXTRA.
fn render(cmd: &clap::Command, parent: Option<&str>, source: &str, out: &mut Vec<Page>) {
    let name = page_name(cmd);
    let exit_status = cmd.get_after_help().map(|h| h.to_string());
    let man = Man::new(cmd.clone().after_help(None::<&str>)).source(source);
    let mut roff = Vec::new();
    man.render(&mut roff)
        .expect("rendering into memory cannot fail");
    let mut more = Roff::new();
    if let Some(text) = exit_status {
        more.control("SH", ["EXIT STATUS"]).text([roman(text)]);
    }
    see_also(&mut more, cmd, parent);
    // Each rendering starts with the same apostrophe preamble; the page needs it once.
    let more = more.render();
    let preamble = Roff::new().render();
    roff.extend_from_slice(more.strip_prefix(&preamble).unwrap_or(&more).as_bytes());
    out.push(Page {
        file_name: man.get_filename(),
        roff,
    });
    for sub in visible_subcommands(cmd) {
        render(sub, Some(&name), source, out);
    }
}

fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name().unwrap_or(cmd.get_name()).to_owned()
}

fn visible_subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set())
}

/// SEE ALSO: the parent page, the subcommands' pages, and the installed documents.
fn see_also(roff: &mut Roff, cmd: &clap::Command, parent: Option<&str>) {
    roff.control("SH", ["SEE ALSO"]);
    // Page names and paths are not words to hyphenate ("appli-ance-backup") or to space out.
    roff.control("nh", [] as [&str; 0]).control("ad", ["l"]);
    let pages: Vec<String> = parent
        .into_iter()
        .map(str::to_owned)
        .chain(visible_subcommands(cmd).map(page_name))
        .collect();
    for (i, page) in pages.iter().enumerate() {
        let sep = if i + 1 < pages.len() { ")," } else { ")" };
        roff.text([bold(page.as_str()), roman("(1"), roman(sep)]);
    }
    roff.control("PP", [] as [&str; 0]);
    roff.text([roman(format!(
        "{DOC_DIR}/README.md (a walkthrough), {DOC_DIR}/docs/design.md (the API, the data \
         layout, the peer lifecycle), {DOC_DIR}/docs/handlers.md (handler jobs) and \
         {DOC_DIR}/README.packaging.md (the systemd units)."
    ))]);
}

/// Writes every page into `dir` (created if missing), mode 0644, each flushed to disk.
pub fn run(dir: &Path) -> Result<(), Failure> {
    if dir.exists() && !dir.is_dir() {
        return Err(usage(format!(
            "man: DIR {} exists and is not a directory",
            dir.display()
        )));
    }
    fs::create_dir_all(dir)
        .map_err(|e| fatal(format!("man: cannot create {}: {e}", dir.display())))?;
    for page in pages() {
        let path: PathBuf = dir.join(&page.file_name);
        write_page(&path, &page.roff)
            .map_err(|e| fatal(format!("man: cannot write {}: {e}", path.display())))?;
        println!("{}", path.display());
    }
    Ok(())
}

fn write_page(path: &Path, roff: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)?;
    // An existing file keeps its mode through `open`; a page is always world-readable.
    file.set_permissions(fs::Permissions::from_mode(0o644))?;
    file.write_all(roff)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn page(pages: &[Page], file_name: &str) -> String {
        let p = pages
            .iter()
            .find(|p| p.file_name == file_name)
            .unwrap_or_else(|| panic!("no page {file_name}"));
        String::from_utf8(p.roff.clone()).expect("roff is UTF-8")
    }

    /// The text of one `.SH` section (up to the next `.SH`).
    fn section<'a>(roff: &'a str, heading: &str) -> &'a str {
        let start = roff
            .find(&format!(".SH {heading}\n"))
            .unwrap_or_else(|| panic!("no section {heading} in\n{roff}"));
        let rest = &roff[start + 1..];
        &rest[..rest.find("\n.SH ").map_or(rest.len(), |i| i + 1)]
    }

    /// Every command clap knows, other than hidden ones, is in `appliance.1`'s SUBCOMMANDS
    /// section with its own page: a new subcommand cannot ship undocumented.
    #[test]
    fn the_top_page_lists_every_visible_subcommand_and_each_has_a_page() {
        let pages = pages();
        assert_eq!(pages[0].file_name, "appliance.1");
        let top = page(&pages, "appliance.1");
        let subcommands = section(&top, "SUBCOMMANDS");
        let root = Cli::command();
        let visible: Vec<_> = visible_subcommands(&root).collect();
        assert!(visible.len() >= 9, "{} subcommands", visible.len());
        for sub in visible {
            let name = format!("appliance\\-{}(1)", sub.get_name());
            assert!(
                subcommands.contains(&name),
                "{name} missing from\n{subcommands}"
            );
            let about = sub.get_about().expect("every subcommand says what it does");
            let first_words: String = about.to_string().chars().take(20).collect();
            assert!(
                subcommands.contains(&first_words),
                "{first_words:?} missing from\n{subcommands}"
            );
            page(&pages, &format!("appliance-{}.1", sub.get_name()));
        }
        // Nested commands get their pages too, named as man(1) expects.
        for sub in [
            "add", "list", "show", "role", "enable", "disable", "remove", "rotate",
        ] {
            let p = page(&pages, &format!("appliance-peer-{sub}.1"));
            let title = format!(
                ".TH appliance-peer-{sub} 1  \"appliance {}\"",
                env!("CARGO_PKG_VERSION")
            );
            assert!(p.contains(&title), "{title} in\n{p}");
        }
    }

    #[test]
    fn the_hidden_man_command_gets_no_page_and_no_mention() {
        let pages = pages();
        assert!(pages.iter().all(|p| p.file_name != "appliance-man.1"));
        assert!(!page(&pages, "appliance.1").contains("appliance\\-man"));
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains(" man "), "{help}");
        // ... but it parses.
        assert!(Cli::try_parse_from(["appliance", "man", "target/man"]).is_ok());
    }

    /// The pages say what `--help` says: options, defaults, the exit codes, and where the
    /// documents are, with links between parent and child pages.
    #[test]
    fn pages_carry_the_options_the_exit_codes_and_see_also() {
        let pages = pages();
        let top = page(&pages, "appliance.1");
        assert!(top.contains("\\-\\-data\\-dir"), "{top}");
        assert!(
            section(&top, "\"EXIT STATUS\"").contains("Exit codes"),
            "{top}"
        );
        assert!(!top.contains(".SH EXTRA"), "{top}");
        assert_eq!(
            top.matches(".ie \\n(.g .ds Aq").count(),
            1,
            "one preamble:\n{top}"
        );
        let serve = page(&pages, "appliance-serve.1");
        assert!(serve.contains("\\-\\-backup\\-every"), "{serve}");
        assert!(serve.contains("APPLIANCE_ENDPOINT"), "{serve}");
        let see_also = section(&serve, "\"SEE ALSO\"");
        assert!(see_also.contains("\\fBappliance\\fR(1"), "{see_also}");
        assert!(
            see_also.contains("/usr/share/doc/appliance/README.md"),
            "{see_also}"
        );
        let peer = section(&page(&pages, "appliance-peer.1"), "\"SEE ALSO\"").to_owned();
        for p in [
            "appliance",
            "appliance\\-peer\\-add",
            "appliance\\-peer\\-rotate",
        ] {
            assert!(peer.contains(&format!("\\fB{p}\\fR(1")), "{p} in\n{peer}");
        }
    }

    #[test]
    fn run_writes_every_page_world_readable_and_refuses_a_file_as_dir() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("appliance-man-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let dir = base.join("man");
        assert!(run(&dir).is_ok());
        let mut written: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        written.sort();
        let mut expected: Vec<String> = pages().into_iter().map(|p| p.file_name).collect();
        expected.sort();
        assert_eq!(written, expected);
        for name in &written {
            let mode = fs::metadata(dir.join(name)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644, "{name}");
        }
        let file = base.join("file");
        fs::write(&file, "x").unwrap();
        let err = run(&file).expect_err("a file is no directory");
        assert_eq!(err.code, 2);
        assert!(err.message.contains("DIR"), "{}", err.message);
        fs::remove_dir_all(&base).unwrap();
    }
}
