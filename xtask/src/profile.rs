//! `cargo xtask bench --profile`: where the instructions of each benchmark go, per function.
//!
//! QEMU logs each translation block when it translates it (`-d in_asm`: its guest addresses
//! and instruction words) and each time it runs one (`-d exec`, with `nochain` so that no
//! block jumps straight into the next unlogged). A run's profile is the executed blocks
//! weighted by their instruction counts, each attributed to the function symbol of its first
//! address in the ELF files the image was built from (loader, monitor, kernel and apps,
//! kept in the image's `symbols/`). Apps share one virtual layout, so where two ELF files
//! cover an address the block's logged instruction words decide whose code ran. The bench
//! app calls `bench_profile_mark` at the start of `main` and around each measured phase:
//! the log is cut there, so everything before the first mark is boot, and each phase gets
//! the instructions of the whole system (app, kernel, monitor, peer) while it ran.

use anyhow::{Context, Result};
use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};
use std::collections::HashMap;
use std::path::Path;

/// The bench app's phase marker (`userland/apps/bench`).
pub const MARKER: &str = "bench_profile_mark";

/// One ELF file's code: its function symbols and executable bytes.
pub struct Image {
    pub name: String,
    /// `(address, name)`, sorted by address; a symbol reaches up to the next one.
    symbols: Vec<(u32, String)>,
    /// `(address, bytes)` of each executable section.
    text: Vec<(u32, Vec<u8>)>,
}

impl Image {
    /// Reads the symbols and code of the ELF file `bytes`, calling it `name`.
    pub fn from_elf(name: &str, bytes: &[u8]) -> Result<Image> {
        let file = object::File::parse(bytes).with_context(|| format!("{name}: not an ELF file"))?;
        let mut text = Vec::new();
        for section in file.sections().filter(|s| s.kind() == SectionKind::Text && s.size() > 0) {
            let data = section.data().with_context(|| format!("{name}: reading {:?}", section.name()))?;
            text.push((section.address() as u32, data.to_vec()));
        }
        let in_text = |address: u32| {
            text.iter().any(|(start, bytes)| (*start..*start + bytes.len() as u32).contains(&address))
        };
        // `(address, size, name)`: functions, and the labels of assembly code (no type, no size).
        let mut symbols: Vec<(u32, u64, String)> = file
            .symbols()
            .filter(|s| !s.is_undefined() && !matches!(s.kind(), SymbolKind::Section | SymbolKind::File))
            .filter_map(|s| {
                let raw = s.name().ok()?;
                // `$a`, `$d`, `$t`: ARM mapping symbols, not functions.
                if raw.is_empty() || raw.starts_with('$') || raw.starts_with(".L") {
                    return None;
                }
                // A Thumb function's address has bit 0 set.
                let address = (s.address() as u32) & !1;
                let name = format!("{:#}", rustc_demangle::demangle(raw));
                in_text(address).then_some((address, s.size(), name))
            })
            .collect();
        // Of several names for one address, the function's (it has a size), and a label like
        // `_start` before one like `__image_start`.
        symbols.sort_by(|a, b| {
            (a.0, std::cmp::Reverse(a.1), a.2.starts_with("__"), &a.2).cmp(&(
                b.0,
                std::cmp::Reverse(b.1),
                b.2.starts_with("__"),
                &b.2,
            ))
        });
        symbols.dedup_by_key(|(address, ..)| *address);
        let symbols = symbols.into_iter().map(|(address, _, name)| (address, name)).collect();
        Ok(Image { name: name.to_string(), symbols, text })
    }

    /// An image from its parts, for tests.
    #[cfg(test)]
    fn new(name: &str, symbols: &[(u32, &str)], text: &[(u32, &[u8])]) -> Image {
        Image {
            name: name.into(),
            symbols: symbols.iter().map(|(a, n)| (*a, n.to_string())).collect(),
            text: text.iter().map(|(a, b)| (*a, b.to_vec())).collect(),
        }
    }

    fn covers(&self, address: u32) -> bool {
        self.bytes_at(address, 1).is_some()
    }

    fn bytes_at(&self, address: u32, len: usize) -> Option<&[u8]> {
        self.text.iter().find_map(|(start, bytes)| {
            let offset = address.checked_sub(*start)? as usize;
            bytes.get(offset..offset.checked_add(len)?)
        })
    }

    /// Whether every logged `(address, instruction word, size)` matches this file's code.
    fn matches(&self, instructions: &[(u32, u32, usize)]) -> bool {
        instructions.iter().all(|&(address, word, size)| {
            self.bytes_at(address, size).is_some_and(|b| b == &word.to_le_bytes()[..size])
        })
    }

    /// The function that contains `address`.
    fn function(&self, address: u32) -> Option<&str> {
        let index = self.symbols.partition_point(|(start, _)| *start <= address).checked_sub(1)?;
        Some(&self.symbols[index].1)
    }
}

/// The ELF files of one image.
pub struct Symbols {
    images: Vec<Image>,
}

impl Symbols {
    #[cfg(test)]
    fn new(images: Vec<Image>) -> Symbols {
        Symbols { images }
    }

    /// Every `*.elf` in `dir` (an image's `symbols/`), named after its file.
    pub fn load_dir(dir: &Path) -> Result<Symbols> {
        let mut images = Vec::new();
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "elf"))
            .collect();
        paths.sort();
        for path in paths {
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            images.push(Image::from_elf(&name, &bytes)?);
        }
        Ok(Symbols { images })
    }

    /// `(image, function)` for a translation block whose instructions are `instructions`
    /// (`(address, word, size)`, the first at the block's start): of the files that cover
    /// its address, the one whose code it is; names every file when several have the same
    /// code there.
    fn resolve(&self, instructions: &[(u32, u32, usize)]) -> (String, String) {
        let Some(&(pc, ..)) = instructions.first() else {
            return ("?".into(), "(empty block)".into());
        };
        let covering: Vec<&Image> = self.images.iter().filter(|i| i.covers(pc)).collect();
        let matching: Vec<&Image> = covering.iter().copied().filter(|i| i.matches(instructions)).collect();
        let chosen = if matching.is_empty() { covering } else { matching };
        match chosen.first() {
            None => ("?".into(), format!("{pc:#010x}")),
            Some(first) => {
                let names: Vec<&str> = chosen.iter().map(|i| i.name.as_str()).collect();
                let function = first.function(pc).map_or_else(|| format!("{pc:#010x}"), str::to_string);
                (names.join("|"), function)
            }
        }
    }
}

/// Instructions per `(image, function)`.
#[derive(Default, Debug)]
pub struct Segment {
    pub counts: HashMap<(String, String), u64>,
}

impl Segment {
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The functions by instructions, most first.
    pub fn ranked(&self) -> Vec<(&(String, String), u64)> {
        let mut ranked: Vec<_> = self.counts.iter().map(|(k, v)| (k, *v)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        ranked
    }

    /// Instructions per image, most first.
    pub fn by_image(&self) -> Vec<(String, u64)> {
        let mut images: HashMap<&str, u64> = HashMap::new();
        for ((image, _), count) in &self.counts {
            *images.entry(image.as_str()).or_default() += count;
        }
        let mut images: Vec<(String, u64)> = images.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        images.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        images
    }
}

/// A translated block: the addresses of its instructions and whose code it is.
struct Block {
    addresses: Vec<u32>,
    key: (String, String),
    marker: bool,
}

/// Reads QEMU's `-d in_asm,exec,nochain` log line by line and adds up the instructions of
/// the executed blocks, starting a new [`Segment`] at each execution of the marker.
pub struct Profiler<'a> {
    symbols: &'a Symbols,
    /// The block being logged by `in_asm`: `(address, word, size)` per instruction.
    translating: Option<Vec<(u32, u32, usize)>>,
    /// Blocks by the host address of their translated code, which each `exec` line names.
    blocks: HashMap<u64, Block>,
    /// The last block counted, and in which segment.
    last: Option<(u64, usize)>,
    pub segments: Vec<Segment>,
}

impl<'a> Profiler<'a> {
    pub fn new(symbols: &'a Symbols) -> Profiler<'a> {
        Profiler {
            symbols,
            translating: None,
            blocks: HashMap::new(),
            last: None,
            segments: vec![Segment::default()],
        }
    }

    pub fn line(&mut self, line: &str) {
        if line.starts_with("IN:") {
            self.translating = Some(Vec::new());
        } else if let Some(rest) = line.strip_prefix("Trace ") {
            let translated = self.translating.take();
            if let Some(host) = trace_host_address(rest) {
                self.executed(host, translated);
            }
        } else if let Some(rest) = line.strip_prefix("Stopped execution of TB chain before ") {
            // The block was entered but not run (an instruction budget or interrupt check at
            // its start): take back what its `Trace` line counted.
            if let Some(host) = parse_hex(rest.split_whitespace().next().unwrap_or(""))
                && self.last.is_some_and(|(last, _)| last == host)
            {
                self.take_back(0);
            }
        } else if let Some(rest) = line.strip_prefix("cpu_io_recompile: rewound execution of TB to ") {
            // The last block ran up to a device access that was not its last instruction; it
            // is run again from there, split: only the instructions before it ran.
            if let (Some(address), Some((host, _))) = (u32::from_str_radix(rest.trim(), 16).ok(), self.last)
                && let Some(ran) =
                    self.blocks.get(&host).and_then(|b| b.addresses.iter().position(|a| *a == address))
            {
                self.take_back(ran);
            }
        } else if let Some(instructions) = self.translating.as_mut()
            && let Some(instruction) = parse_instruction(line)
        {
            instructions.push(instruction);
        }
    }

    /// The block at `host` runs; `translated` is its translation when it was just logged
    /// (QEMU runs a block right after translating it).
    fn executed(&mut self, host: u64, translated: Option<Vec<(u32, u32, usize)>>) {
        if let Some(instructions) = translated {
            let (image, function) = self.symbols.resolve(&instructions);
            let marker = function == MARKER
                && instructions.first().is_some_and(|(pc, ..)| self.marker_start(&image, *pc));
            let addresses = instructions.iter().map(|(address, ..)| *address).collect();
            let block = Block { addresses, key: (image, function), marker };
            self.blocks.insert(host, block);
        }
        let Some(block) = self.blocks.get(&host) else {
            return;
        };
        if block.marker {
            self.segments.push(Segment::default());
        }
        let segment = self.segments.len() - 1;
        *self.segments[segment].counts.entry(block.key.clone()).or_default() += block.addresses.len() as u64;
        self.last = Some((host, segment));
    }

    /// The last block counted ran only its first `ran` instructions.
    fn take_back(&mut self, ran: usize) {
        let Some((host, segment)) = self.last.take() else {
            return;
        };
        let Some(block) = self.blocks.get(&host) else {
            return;
        };
        let unrun = block.addresses.len().saturating_sub(ran) as u64;
        let count = self.segments[segment].counts.entry(block.key.clone()).or_default();
        *count = count.saturating_sub(unrun);
        if block.marker && ran == 0 {
            // A mark that did not run cuts nothing: it runs again and cuts then.
            self.segments.pop();
        }
    }

    /// Whether `pc` is the first instruction of the marker function in image `image`.
    fn marker_start(&self, image: &str, pc: u32) -> bool {
        self.symbols.images.iter().any(|i| {
            image.split('|').any(|n| n == i.name)
                && i.symbols.iter().any(|(address, name)| *address == pc && name == MARKER)
        })
    }
}

/// The host address in the part of an `exec` line after `Trace `:
/// `0: 0x7f12345600 [00000000/00010000/00000000/ff200000] `.
fn trace_host_address(rest: &str) -> Option<u64> {
    let (_, after) = rest.split_once(": ")?;
    parse_hex(after.split_whitespace().next()?)
}

fn parse_hex(text: &str) -> Option<u64> {
    u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

/// One `in_asm` instruction line: `0x00010000:  e92d4800  push {fp, lr}` (A32) or
/// `0x00010004:  4770  bx lr` (T32): address, instruction word and its size in bytes.
fn parse_instruction(line: &str) -> Option<(u32, u32, usize)> {
    let (address, rest) = line.split_once(':')?;
    let address = u32::try_from(parse_hex(address.trim())?).ok()?;
    let word = rest.split_whitespace().next()?;
    let size = word.len() / 2;
    if !matches!(size, 2 | 4) {
        return None;
    }
    Some((address, u32::from_str_radix(word, 16).ok()?, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two apps linked at the same address with different code there, and the same code
    /// (a shared runtime function) at 0x10100; a kernel elsewhere.
    fn symbols() -> Symbols {
        let app = |name: &str, first: u32| {
            let mut text = Vec::new();
            text.extend_from_slice(&first.to_le_bytes());
            text.extend_from_slice(&0xe12f_ff1eu32.to_le_bytes());
            text.extend_from_slice(&0xe320_f000u32.to_le_bytes());
            text.resize(0x100, 0);
            text.extend_from_slice(&0xe320_f000u32.to_le_bytes());
            text.extend_from_slice(&0xe12f_ff1eu32.to_le_bytes());
            let symbols = [(0x10000, "main"), (0x10008, MARKER), (0x10100, "runtime::start")];
            Image::new(name, &symbols, &[(0x10000, &text)])
        };
        let kernel = Image::new(
            "kernel",
            &[(0x4010_0000, "kernel::entry"), (0x4010_0010, "kernel::syscall")],
            &[(0x4010_0000, &[0u8; 0x40])],
        );
        Symbols::new(vec![app("alpha", 0xe3a0_0001), app("beta", 0xe3a0_0002), kernel])
    }

    const LOG: &str = "\
----------------
IN: 
0x00010000:  e3a00002  mov      r0, #2
0x00010004:  e12fff1e  bx       lr

Trace 0: 0x7f0000000100 [00000000/00010000/00000370/ff020200] 
----------------
IN: 
0x00010000:  e3a00001  mov      r0, #1
0x00010004:  e12fff1e  bx       lr

Trace 0: 0x7f0000000200 [00000000/00010000/00000370/ff020200] 
Trace 0: 0x7f0000000100 [00000000/00010000/00000370/ff020200] 
----------------
IN: 
0x40100010:  e5901000  ldr      r1, [r0]
0x40100014:  e5801000  str      r1, [r0]
0x40100018:  e2800001  add      r0, r0, #1
0x4010001c:  e12fff1e  bx       lr

Trace 0: 0x7f0000000300 [00000000/40100010/00000370/ff020200] 
cpu_io_recompile: rewound execution of TB to 40100014
Trace 0: 0x7f0000000300 [00000000/40100010/00000370/ff020200] 
Stopped execution of TB chain before 0x7f0000000300 [40100010] 
----------------
IN: 
0x00010008:  e320f000  nop

Trace 0: 0x7f0000000400 [00000000/00010008/00000370/ff020200] 
Trace 0: 0x7f0000000400 [00000000/00010008/00000370/ff020200] 
Stopped execution of TB chain before 0x7f0000000400 [00010008] 
Trace 0: 0x7f0000000400 [00000000/00010008/00000370/ff020200] 
----------------
IN: 
0x00010100:  e320f000  nop
0x00010104:  e12fff1e  bx       lr

Trace 0: 0x7f0000000500 [00000000/00010100/00000370/ff020200] 
Trace 0: 0x7f0000000300 [00000000/40100010/00000370/ff020200] 
";

    fn count(segment: &Segment, image: &str, function: &str) -> u64 {
        segment.counts.get(&(image.to_string(), function.to_string())).copied().unwrap_or(0)
    }

    #[test]
    fn blocks_at_one_address_go_to_the_app_whose_code_they_are() {
        let symbols = symbols();
        let mut profiler = Profiler::new(&symbols);
        LOG.lines().for_each(|line| profiler.line(line));
        let boot = &profiler.segments[0];
        assert_eq!(count(boot, "beta", "main"), 4, "translated, run, and run again by its host address");
        assert_eq!(count(boot, "alpha", "main"), 2);
    }

    #[test]
    fn partly_run_blocks_count_only_what_ran() {
        let symbols = symbols();
        let mut profiler = Profiler::new(&symbols);
        LOG.lines().for_each(|line| profiler.line(line));
        // One instruction before the rewound device access; then a run that never started.
        assert_eq!(count(&profiler.segments[0], "kernel", "kernel::syscall"), 1);
        assert_eq!(count(&profiler.segments[2], "kernel", "kernel::syscall"), 4);
    }

    #[test]
    fn each_run_of_the_marker_starts_a_segment_and_a_stopped_one_does_not() {
        let symbols = symbols();
        let mut profiler = Profiler::new(&symbols);
        LOG.lines().for_each(|line| profiler.line(line));
        let totals: Vec<u64> = profiler.segments.iter().map(Segment::total).collect();
        assert_eq!(totals, [7, 1, 1 + 2 + 4]);
        assert_eq!(count(&profiler.segments[1], "alpha|beta", MARKER), 1, "the same code in both apps");
        assert_eq!(count(&profiler.segments[2], "alpha|beta", "runtime::start"), 2);
    }

    #[test]
    fn ranking_and_image_totals() {
        let symbols = symbols();
        let mut profiler = Profiler::new(&symbols);
        LOG.lines().for_each(|line| profiler.line(line));
        let boot = &profiler.segments[0];
        let ranked: Vec<(&str, u64)> = boot.ranked().iter().map(|((_, f), n)| (f.as_str(), *n)).collect();
        assert_eq!(ranked, [("main", 4), ("main", 2), ("kernel::syscall", 1)]);
        assert_eq!(boot.by_image(), [("beta".into(), 4), ("alpha".into(), 2), ("kernel".into(), 1)]);
    }

    #[test]
    fn addresses_outside_every_file_are_named_by_address() {
        let symbols = symbols();
        assert_eq!(symbols.resolve(&[(0x0800_0000, 0, 4)]), ("?".to_string(), "0x08000000".to_string()));
    }

    #[test]
    fn symbols_of_a_real_elf_file_resolve_to_their_functions() {
        // This test binary is an ELF file with a symbol table.
        let path = std::env::current_exe().unwrap();
        let image = Image::from_elf("xtask", &std::fs::read(path).unwrap()).unwrap();
        let (address, _) = image
            .symbols
            .iter()
            .find(|(_, name)| name.ends_with("profile::parse_instruction"))
            .expect("the symbol table names this crate's functions, demangled");
        assert_eq!(image.function(*address).unwrap(), image.function(*address + 1).unwrap());
        assert!(image.function(*address).unwrap().ends_with("parse_instruction"));
    }
}
