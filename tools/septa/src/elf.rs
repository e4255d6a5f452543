//! Turning a linked stage (ELF) into the raw image the loader copies.

use anyhow::{Context, Result, bail};
use object::elf::PT_LOAD;
use object::read::elf::{ElfFile32, ProgramHeader};
use object::{Endianness, Object};
use std::path::Path;

/// A raw memory image: the bytes to place at `base`.
#[derive(Debug)]
pub struct Flat {
    pub base: u32,
    pub bytes: Vec<u8>,
    pub entry: u32,
}

/// Lays out the file contents of every `PT_LOAD` segment at its physical address. Segments
/// with no file contents (bss, stacks) are left out: the stage zeroes them itself.
pub fn flatten(elf: &[u8]) -> Result<Flat> {
    let file = ElfFile32::<Endianness>::parse(elf).context("not a 32-bit ELF file")?;
    let endian = file.endian();
    let mut pieces = Vec::new();
    for header in file.elf_program_headers() {
        if header.p_type(endian) != PT_LOAD || header.p_filesz(endian) == 0 {
            continue;
        }
        let data = header.data(endian, elf).map_err(|_| anyhow::anyhow!("segment outside the file"))?;
        pieces.push((header.p_paddr(endian), data));
    }
    let Some(base) = pieces.iter().map(|(addr, _)| *addr).min() else {
        bail!("no loadable segment");
    };
    let end = pieces.iter().map(|(addr, data)| *addr as usize + data.len()).max().unwrap_or(0);
    let mut bytes = vec![0u8; end - base as usize];
    for (addr, data) in pieces {
        let at = (addr - base) as usize;
        bytes[at..at + data.len()].copy_from_slice(data);
    }
    Ok(Flat { base, bytes, entry: file.entry() as u32 })
}

/// Reads and flattens the ELF at `path`, which must be linked to start at `base`.
pub fn flatten_file(path: &Path, base: usize) -> Result<Vec<u8>> {
    let elf = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let flat = flatten(&elf).with_context(|| format!("{}", path.display()))?;
    if flat.base as usize != base || flat.entry as usize != base {
        bail!(
            "{}: linked at {:#010x} with entry {:#010x}, but the board loads it at {base:#010x}; \
             check the stage's linker script in targets/",
            path.display(),
            flat.base,
            flat.entry
        );
    }
    Ok(flat.bytes)
}

/// The `memory-kib` an app ELF needs on the device: every loadable segment rounded up to
/// whole 4 KiB pages, as the kernel maps them, plus the stack (`stack_kib`) and the
/// translation tables.
pub fn app_memory_kib(elf: &[u8], stack_kib: u32) -> Result<u32> {
    let file = ElfFile32::<Endianness>::parse(elf).context("not a 32-bit ELF file")?;
    let endian = file.endian();
    let pages: u64 = file
        .elf_program_headers()
        .iter()
        .filter(|h| h.p_type(endian) == PT_LOAD)
        .map(|h| (h.p_memsz(endian) as u64).div_ceil(4096))
        .sum();
    let kib = pages * 4 + (stack_kib + septa_abi::app::TABLES_KIB) as u64;
    u32::try_from(kib).context("segments larger than 4 GiB")
}

/// Rewrites an executable ELF with only what the kernel loads: the ELF header, the program
/// headers, and each segment's file contents (section headers, symbols and debug info go).
/// The kernel checks and loads exactly these fields, so the result runs identically.
pub fn strip_to_segments(elf: &[u8]) -> Result<Vec<u8>> {
    const EHDR: usize = 52;
    const PHDR: usize = 32;
    let file = ElfFile32::<Endianness>::parse(elf).context("not a 32-bit ELF file")?;
    let endian = file.endian();
    let headers = file.elf_program_headers();
    let mut out = elf.get(..EHDR).context("ELF header truncated")?.to_vec();
    let table_end = EHDR + headers.len() * PHDR;
    let mut data = Vec::new();
    let mut table = Vec::with_capacity(headers.len() * PHDR);
    for header in headers {
        let contents = header.data(endian, elf).map_err(|_| anyhow::anyhow!("segment outside the file"))?;
        // Keep each segment's offset congruent to its address modulo 4 KiB, as loaders expect.
        let vaddr = header.p_vaddr(endian) as usize;
        let mut offset = table_end + data.len();
        offset += (vaddr % 4096 + 4096 - offset % 4096) % 4096;
        let offset = if contents.is_empty() { 0 } else { offset };
        if !contents.is_empty() {
            data.resize(offset - table_end, 0);
            data.extend_from_slice(contents);
        }
        let mut raw = object::bytes_of(header).to_vec();
        raw[4..8].copy_from_slice(&(offset as u32).to_le_bytes());
        table.extend_from_slice(&raw);
    }
    // e_phoff = right after the header; no section headers.
    out[28..32].copy_from_slice(&(EHDR as u32).to_le_bytes());
    out[32..36].copy_from_slice(&0u32.to_le_bytes());
    out[46..52].copy_from_slice(&[0; 6]);
    out.extend_from_slice(&table);
    out.extend_from_slice(&data);
    Ok(out)
}
