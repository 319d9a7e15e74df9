//! iPXE scripts: the templates in `templates/` (one per boot flow, each with a header comment),
//! which artifacts to name in them, and `{{name}}` substitution of validated values only, so
//! nothing a caller or a file name supplies can add an iPXE command.

use std::fmt;

use crate::root::Root;

const DISPATCH: &str = include_str!("templates/boot.ipxe");
const BIOS: &str = include_str!("templates/boot-pcbios.ipxe");
const UEFI: &str = include_str!("templates/boot-efi.ipxe");
const UEFI_UKI: &str = include_str!("templates/boot-efi-uki.ipxe");
const CUSTOM: &str = include_str!("templates/custom.ipxe");

/// The fixed console and first-boot arguments every generated kernel line carries.
pub const FIXED_ARGS: &str = "console=ttyS0 console=tty0 systemd.firstboot=off";

/// Why a script could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("{what} {value:?} is not allowed in a boot script: {why}")]
    Invalid {
        what: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("template uses {{{{{0}}}}}, which has no value")]
    Unbound(String),
    #[error("template has an unterminated placeholder")]
    Unterminated,
    #[error("the artifacts directory has no {0}")]
    Missing(&'static str),
}

/// The scripts a client can ask for, by file name (the same names over TFTP and HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// `boot.ipxe`: chains `boot-${platform}.ipxe`.
    Dispatch,
    /// `boot-pcbios.ipxe`: kernel + initrd.
    Bios,
    /// `boot-efi.ipxe`: the UKI when the artifacts have one, else kernel + initrd.
    Uefi,
    /// `custom.ipxe`: what netboot.xyz's custom-URL menu chains.
    Custom,
}

impl Flow {
    /// The flow served under `name`, if `name` is one of the generated scripts.
    pub fn from_name(name: &str) -> Option<Flow> {
        match name.trim_start_matches('/') {
            "boot.ipxe" => Some(Flow::Dispatch),
            "boot-pcbios.ipxe" => Some(Flow::Bios),
            "boot-efi.ipxe" => Some(Flow::Uefi),
            "custom.ipxe" => Some(Flow::Custom),
            _ => None,
        }
    }

    /// The flow for an `arch=` query value: iPXE's `${platform}` (`pcbios`, `efi`) or the
    /// plain words `bios`, `uefi`.
    pub fn from_arch(arch: &str) -> Option<Flow> {
        match arch.to_ascii_lowercase().as_str() {
            "pcbios" | "bios" => Some(Flow::Bios),
            "efi" | "uefi" => Some(Flow::Uefi),
            _ => None,
        }
    }
}

/// Validated values for the kernel command line.
#[derive(Clone, PartialEq, Eq)]
pub struct BootParams {
    join: String,
    token: Option<String>,
    /// Extra kernel command-line words (`cortex.role=coordinator`, `quiet`, …), in order.
    extra: Vec<String>,
}

impl fmt::Debug for BootParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootParams")
            .field("join", &self.join)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("extra", &self.extra)
            .finish()
    }
}

impl BootParams {
    /// `join` is the coordinator's gRPC address (`host:port`, `[v6]:port`); `token` the join
    /// token booted machines present (charset `A-Z a-z 0-9 . _ ~ + / = : -`).
    pub fn new(join: &str, token: Option<&str>) -> Result<BootParams, ScriptError> {
        check_join(join)?;
        if let Some(t) = token {
            check_token(t)?;
        }
        Ok(BootParams {
            join: join.to_string(),
            token: token.map(str::to_string),
            extra: Vec::new(),
        })
    }

    /// Adds kernel command-line words (each checked with [`check_kernel_arg`]; at most 32).
    pub fn with_args(mut self, args: &[String]) -> Result<BootParams, ScriptError> {
        if args.len() > 32 {
            return Err(invalid("kernel arguments", "", "at most 32 are allowed"));
        }
        for a in args {
            check_kernel_arg(a)?;
        }
        self.extra = args.to_vec();
        Ok(self)
    }

    pub fn join(&self) -> &str {
        &self.join
    }

    /// The kernel arguments: join address, token (if any), consoles, first-boot off.
    pub fn cmdline(&self) -> String {
        let mut line = format!("cortex.join={}", self.join);
        if let Some(t) = &self.token {
            line.push_str(" cortex.token=");
            line.push_str(t);
        }
        for a in &self.extra {
            line.push(' ');
            line.push_str(a);
        }
        line.push(' ');
        line.push_str(FIXED_ARGS);
        line
    }
}

/// The boot artifacts found at the top of the artifacts directory (names only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Artifacts {
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub uki: Option<String>,
}

/// iPXE binaries that end in `.efi` but are not a UKI.
const NOT_UKI: [&str; 2] = ["ipxe.efi", "snponly.efi"];

impl Artifacts {
    /// Looks at the top level of the root: kernel `vmlinuz` or `*.vmlinuz`; initrd `initrd`,
    /// `initrd.img`, `*.initrd` or `*.cpio.{zst,gz,xz}`; UKI any other `*.efi`. Exact names win,
    /// then the first in sorted order, so the choice is stable.
    pub fn detect(root: &Root) -> Artifacts {
        let mut names: Vec<String> = match std::fs::read_dir(root.dir()) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| check_name(n).is_ok() && root.has(n))
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        let pick = |exact: &[&str], suffixes: &[&str], exclude: &[&str]| -> Option<String> {
            exact
                .iter()
                .find(|e| names.iter().any(|n| n == *e))
                .map(|e| e.to_string())
                .or_else(|| {
                    names
                        .iter()
                        .find(|n| suffixes.iter().any(|s| n.ends_with(s)) && !exclude.contains(&n.as_str()))
                        .cloned()
                })
        };
        Artifacts {
            kernel: pick(&["vmlinuz"], &[".vmlinuz"], &[]),
            initrd: pick(
                &["initrd", "initrd.img"],
                &[".initrd", ".cpio.zst", ".cpio.gz", ".cpio.xz"],
                &[],
            ),
            uki: pick(&[], &[".efi"], &NOT_UKI),
        }
    }
}

/// Renders the script for `flow`.
pub fn render_flow(flow: Flow, artifacts: &Artifacts, params: &BootParams) -> Result<String, ScriptError> {
    let cmdline = params.cmdline();
    match flow {
        Flow::Dispatch => render(DISPATCH, &[]),
        Flow::Custom => render(CUSTOM, &[]),
        Flow::Uefi if artifacts.uki.is_some() => {
            let uki = artifacts.uki.as_deref().ok_or(ScriptError::Missing("UKI"))?;
            check_name(uki)?;
            render(UEFI_UKI, &[("uki", uki), ("cmdline", &cmdline)])
        }
        Flow::Bios | Flow::Uefi => {
            let kernel = artifacts
                .kernel
                .as_deref()
                .ok_or(ScriptError::Missing("kernel (vmlinuz or *.vmlinuz)"))?;
            let initrd = artifacts
                .initrd
                .as_deref()
                .ok_or(ScriptError::Missing("initrd (initrd, *.initrd or *.cpio.zst)"))?;
            check_name(kernel)?;
            check_name(initrd)?;
            let template = if flow == Flow::Bios { BIOS } else { UEFI };
            render(
                template,
                &[("kernel", kernel), ("initrd", initrd), ("cmdline", &cmdline)],
            )
        }
    }
}

/// Replaces every `{{name}}` in `template` with its value. Every placeholder must be bound and
/// every value must be free of control characters and iPXE's expansion and operator characters
/// (a second line of defence: callers validate each value by kind first).
pub fn render(template: &str, vars: &[(&str, &str)]) -> Result<String, ScriptError> {
    for (name, value) in vars {
        if value
            .chars()
            .any(|c| c.is_control() || matches!(c, '$' | '{' | '}' | '|' | '&' | ';' | '#' | '"' | '\''))
        {
            return Err(ScriptError::Invalid {
                what: "value",
                value: format!("{name}={value}"),
                why: "control, quote or iPXE operator characters",
            });
        }
    }
    let mut out = String::with_capacity(template.len() + 128);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(ScriptError::Unterminated)?;
        let name = after[..end].trim();
        let value = vars
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| ScriptError::Unbound(name.to_string()))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn invalid(what: &'static str, value: &str, why: &'static str) -> ScriptError {
    ScriptError::Invalid {
        what,
        value: value.chars().take(80).collect(),
        why,
    }
}

/// An artifact file name: `A-Z a-z 0-9 . _ + -`, not starting with `.` or `-`, at most 128.
pub fn check_name(name: &str) -> Result<(), ScriptError> {
    if name.is_empty() || name.len() > 128 {
        return Err(invalid("file name", name, "must be 1 to 128 characters"));
    }
    if name.starts_with(['.', '-']) {
        return Err(invalid("file name", name, "must not start with '.' or '-'"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
    {
        return Err(invalid("file name", name, "only A-Z a-z 0-9 . _ + - are allowed"));
    }
    Ok(())
}

/// A join address: `host:port` or `[v6]:port`, host of `A-Z a-z 0-9 . - _`.
pub fn check_join(join: &str) -> Result<(), ScriptError> {
    const WHY: &str = "expected HOST:PORT or [IPv6]:PORT";
    if join.is_empty() || join.len() > 255 {
        return Err(invalid("join address", join, WHY));
    }
    let port = if let Some(v6) = join.strip_prefix('[') {
        let (h, p) = v6
            .split_once("]:")
            .ok_or_else(|| invalid("join address", join, WHY))?;
        if h.is_empty() || !h.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return Err(invalid("join address", join, WHY));
        }
        p
    } else {
        let (h, p) = join
            .rsplit_once(':')
            .ok_or_else(|| invalid("join address", join, WHY))?;
        if h.is_empty()
            || !h
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(invalid("join address", join, WHY));
        }
        p
    };
    match port.parse::<u16>() {
        Ok(p) if p != 0 && port.chars().all(|c| c.is_ascii_digit()) => Ok(()),
        _ => Err(invalid("join address", join, "the port must be 1 to 65535")),
    }
}

/// An extra kernel command-line word: `KEY` or `KEY=VALUE`, the key of `A-Z a-z 0-9 . _ -`,
/// the value of `A-Z a-z 0-9 . _ ~ + / = : - @ , %`, at most 256 characters; no spaces, quotes
/// or `$` (iPXE would expand it). `cortex.join`, `cortex.token` and `initrd` are refused: the
/// service writes those itself (`--join`, `--token`, the artifacts).
pub fn check_kernel_arg(arg: &str) -> Result<(), ScriptError> {
    if arg.is_empty() || arg.len() > 256 {
        return Err(invalid("kernel argument", arg, "must be 1 to 256 characters"));
    }
    let (key, value) = arg.split_once('=').unwrap_or((arg, ""));
    if key.is_empty()
        || key.starts_with('-')
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(
            "kernel argument",
            arg,
            "the key (before '=') must be A-Z a-z 0-9 . _ - and not start with '-'",
        ));
    }
    if !value.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(c, '.' | '_' | '~' | '+' | '/' | '=' | ':' | '-' | '@' | ',' | '%')
    }) {
        return Err(invalid(
            "kernel argument",
            arg,
            "the value may hold only A-Z a-z 0-9 . _ ~ + / = : - @ , %",
        ));
    }
    if matches!(key, "cortex.join" | "cortex.token" | "initrd") {
        return Err(invalid(
            "kernel argument",
            key,
            "is written by the service itself (use --join / --token)",
        ));
    }
    Ok(())
}

/// A join token: 1 to 512 characters of `A-Z a-z 0-9 . _ ~ + / = : - @ ,` (Cortex's join
/// tokens end in `@ADDR,ADDR`; none of these is special to iPXE or the kernel command line).
pub fn check_token(token: &str) -> Result<(), ScriptError> {
    if token.is_empty() || token.len() > 512 {
        return Err(invalid("token", "<redacted>", "must be 1 to 512 characters"));
    }
    if !token.chars().all(|c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '+' | '/' | '=' | ':' | '-' | '@' | ',')
    }) {
        return Err(invalid(
            "token",
            "<redacted>",
            "only A-Z a-z 0-9 . _ ~ + / = : - @ , are allowed",
        ));
    }
    Ok(())
}

/// Checks that `script` is a plausible iPXE script: `#!ipxe` first, then only comments, labels
/// and commands from the set Cortex uses. Tests use it; so can a caller before serving.
pub fn is_valid_ipxe(script: &str) -> Result<(), String> {
    const COMMANDS: [&str; 10] = [
        "chain", "kernel", "initrd", "boot", "echo", "sleep", "exit", "goto", "imgargs", "reboot",
    ];
    let mut lines = script.lines();
    if lines.next() != Some("#!ipxe") {
        return Err("the first line is not #!ipxe".into());
    }
    for (i, line) in lines.enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(label) = line.strip_prefix(':') {
            if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("line {}: bad label {line:?}", i + 2));
            }
            continue;
        }
        let cmd = line.split_whitespace().next().unwrap_or_default();
        if !COMMANDS.contains(&cmd) {
            return Err(format!("line {}: unknown command {cmd:?}", i + 2));
        }
        if line.contains("{{") || line.contains("}}") {
            return Err(format!("line {}: unrendered placeholder", i + 2));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arts() -> Artifacts {
        Artifacts {
            kernel: Some("vmlinuz".into()),
            initrd: Some("initrd".into()),
            uki: None,
        }
    }

    #[test]
    fn every_template_has_a_header_and_renders_to_valid_ipxe() {
        for t in [DISPATCH, BIOS, UEFI, UEFI_UKI, CUSTOM] {
            assert!(t.starts_with("#!ipxe\n# Cortex"), "{t}");
        }
        let p = BootParams::new("10.0.0.1:7071", Some("abc.DEF-123_~+/=")).unwrap();
        let mut with_uki = arts();
        with_uki.uki = Some("cortex.efi".into());
        for (flow, a) in [
            (Flow::Dispatch, arts()),
            (Flow::Bios, arts()),
            (Flow::Uefi, arts()),
            (Flow::Uefi, with_uki),
            (Flow::Custom, arts()),
        ] {
            let s = render_flow(flow, &a, &p).unwrap();
            is_valid_ipxe(&s).unwrap_or_else(|e| panic!("{flow:?}: {e}\n{s}"));
        }
    }

    #[test]
    fn extra_kernel_arguments_are_checked_and_placed_before_the_consoles() {
        let p = BootParams::new("h:1", None)
            .unwrap()
            .with_args(&[
                "cortex.role=coordinator".into(),
                "quiet".into(),
                "cortex.tasks.allow_root=true".into(),
            ])
            .unwrap();
        assert_eq!(
            p.cmdline(),
            format!(
                "cortex.join=h:1 cortex.role=coordinator quiet cortex.tasks.allow_root=true {FIXED_ARGS}"
            )
        );
        for bad in [
            "",
            "a b",
            "x=${evil}",
            "x=\"q\"",
            "x=a;b",
            "-x",
            "=v",
            "cortex.token=abc",
            "cortex.join=h:2",
            "initrd=other",
            "x=a||b",
        ] {
            let e = BootParams::new("h:1", None)
                .unwrap()
                .with_args(&[bad.to_string()])
                .expect_err(bad);
            assert!(e.to_string().contains("kernel argument"), "{bad}: {e}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("a{i}")).collect();
        assert!(BootParams::new("h:1", None).unwrap().with_args(&many).is_err());
    }

    #[test]
    fn kernel_line_carries_join_token_consoles_and_initrd_name() {
        let p = BootParams::new("coord.lan:7071", Some("tok3n")).unwrap();
        let s = render_flow(Flow::Bios, &arts(), &p).unwrap();
        let kernel = s.lines().find(|l| l.starts_with("kernel ")).unwrap();
        assert_eq!(
            kernel,
            "kernel vmlinuz initrd=initrd cortex.join=coord.lan:7071 cortex.token=tok3n \
             console=ttyS0 console=tty0 systemd.firstboot=off || goto failed"
        );
        assert!(s.contains("\ninitrd initrd || goto failed\n"));
        let no_token = BootParams::new("[fd00::1]:7071", None).unwrap();
        let s = render_flow(Flow::Uefi, &arts(), &no_token).unwrap();
        assert!(s.contains("cortex.join=[fd00::1]:7071 console=ttyS0"), "{s}");
        assert!(!s.contains("cortex.token"));
    }

    #[test]
    fn uefi_chains_the_uki_when_present() {
        let p = BootParams::new("h:1", None).unwrap();
        let mut a = arts();
        a.uki = Some("image.efi".into());
        let s = render_flow(Flow::Uefi, &a, &p).unwrap();
        assert!(
            s.contains("\nchain image.efi cortex.join=h:1 console=ttyS0"),
            "{s}"
        );
        // BIOS never uses the UKI.
        assert!(render_flow(Flow::Bios, &a, &p)
            .unwrap()
            .contains("kernel vmlinuz"));
    }

    #[test]
    fn injection_is_refused() {
        for join in [
            "h:1\nshell",
            "h:1 || shell",
            "h;reboot:1",
            "h:1${x}",
            "h:0",
            "h",
            "h:99999",
            ":1",
            "[::1]",
            "[zz]:1",
            "h:+1",
        ] {
            assert!(BootParams::new(join, None).is_err(), "{join:?}");
        }
        for token in [
            "sec ret",
            "sec\nchain http://evil/",
            "sec||shell",
            "${net0/mac}",
            "",
            "sec\"ret",
            "sec#ret",
        ] {
            let err = BootParams::new("h:1", Some(token)).unwrap_err();
            assert!(!err.to_string().contains("sec"), "token leaked: {err}");
        }
        for name in ["a b", "x\nshell", "../vmlinuz", "-x", ".hidden", "a$b", "ä"] {
            assert!(check_name(name).is_err(), "{name:?}");
        }
        let p = BootParams::new("h:1", None).unwrap();
        let evil = Artifacts {
            kernel: Some("vmlinuz\nshell".into()),
            initrd: Some("initrd".into()),
            uki: None,
        };
        assert!(render_flow(Flow::Bios, &evil, &p).is_err());
        assert!(render("x {{a}}", &[("a", "1\n2")]).is_err());
        assert!(render("x {{a}}", &[("a", "${x}")]).is_err());
    }

    #[test]
    fn placeholders_must_be_bound_and_closed() {
        assert_eq!(render("a {{b}} c", &[("b", "B")]).unwrap(), "a B c");
        assert_eq!(render("{{ b }}{{b}}", &[("b", "B")]).unwrap(), "BB");
        assert_eq!(
            render("a {{c}}", &[("b", "B")]),
            Err(ScriptError::Unbound("c".into()))
        );
        assert_eq!(render("a {{b", &[("b", "B")]), Err(ScriptError::Unterminated));
        // iPXE's own ${...} passes through untouched.
        assert_eq!(
            render("chain boot-${platform}.ipxe", &[]).unwrap(),
            "chain boot-${platform}.ipxe"
        );
    }

    #[test]
    fn missing_artifacts_are_named() {
        let p = BootParams::new("h:1", None).unwrap();
        let err = render_flow(Flow::Bios, &Artifacts::default(), &p).unwrap_err();
        assert!(err.to_string().contains("no kernel"), "{err}");
        assert!(render_flow(Flow::Dispatch, &Artifacts::default(), &p).is_ok());
    }

    #[test]
    fn detects_artifacts_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        for n in [
            "image.vmlinuz",
            "image.initrd",
            "image.efi",
            "ipxe.efi",
            "snponly.efi",
            "README",
        ] {
            std::fs::write(tmp.path().join(n), b"x").unwrap();
        }
        let root = Root::new(tmp.path()).unwrap();
        assert_eq!(
            Artifacts::detect(&root),
            Artifacts {
                kernel: Some("image.vmlinuz".into()),
                initrd: Some("image.initrd".into()),
                uki: Some("image.efi".into()),
            }
        );
        std::fs::write(tmp.path().join("vmlinuz"), b"x").unwrap();
        std::fs::write(tmp.path().join("rootfs.cpio.zst"), b"x").unwrap();
        std::fs::remove_file(tmp.path().join("image.initrd")).unwrap();
        let a = Artifacts::detect(&root);
        assert_eq!(a.kernel.as_deref(), Some("vmlinuz"));
        assert_eq!(a.initrd.as_deref(), Some("rootfs.cpio.zst"));
    }

    #[test]
    fn flows_by_name_and_arch() {
        assert_eq!(Flow::from_name("/boot.ipxe"), Some(Flow::Dispatch));
        assert_eq!(Flow::from_name("boot-efi.ipxe"), Some(Flow::Uefi));
        assert_eq!(Flow::from_name("custom.ipxe"), Some(Flow::Custom));
        assert_eq!(Flow::from_name("vmlinuz"), None);
        assert_eq!(Flow::from_arch("pcbios"), Some(Flow::Bios));
        assert_eq!(Flow::from_arch("UEFI"), Some(Flow::Uefi));
        assert_eq!(Flow::from_arch("arm"), None);
    }

    #[test]
    fn validator_rejects_what_it_should() {
        assert!(is_valid_ipxe("#!ipxe\nshell\n").is_err());
        assert!(is_valid_ipxe("#!/bin/sh\n").is_err());
        assert!(is_valid_ipxe("#!ipxe\nkernel {{kernel}}\n").is_err());
        assert!(is_valid_ipxe("#!ipxe\n# c\n:l\nboot\n").is_ok());
    }

    #[test]
    fn a_cortex_join_token_with_its_addresses_is_accepted() {
        check_token("cxj1_ab12_cd34@10.0.0.1:7071,10.0.0.2:7071").unwrap();
        assert!(check_token("a b").is_err());
    }
}
