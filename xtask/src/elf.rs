//! Just enough ELF to check an artifact: its machine, and that it is statically linked.
//!
//! The files come out of container images, so they are untrusted: goblin reads the structures
//! with bounds checks, and every offset or size taken from the file is combined with checked
//! arithmetic, so that a malformed file is an error rather than a panic or a wrong answer.

use std::ffi::CStr;

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use goblin::container::{Ctx, Endian};
use goblin::elf::dynamic::{Dyn, Dynamic, DT_NEEDED, DT_STRSZ, DT_STRTAB};
use goblin::elf::header::{Header, EI_DATA, ELFDATA2LSB};
use goblin::elf::program_header::{ProgramHeader, PT_INTERP, PT_LOAD};
use goblin::elf::Elf;
use goblin::strtab::Strtab;
use kubelet_upstream::Arch;

/// Names in the dynamic string table end with this byte.
const STRTAB_DELIMITER: u8 = 0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    pub machine: u16,
    pub is_64_bit: bool,
    pub has_interpreter: bool,
    /// The program interpreter (dynamic loader) path, for dynamically linked programs.
    pub interpreter: Option<String>,
    /// The shared libraries it needs (DT_NEEDED), in order.
    pub needed: Vec<String>,
}

pub fn read(path: &Utf8Path) -> Result<ElfInfo> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
    parse(&bytes).with_context(|| format!("{path} is not a valid ELF executable"))
}

pub fn parse(bytes: &[u8]) -> Result<ElfInfo> {
    let header = Elf::parse_header(bytes).context("no complete ELF header")?;
    let ctx = little_endian_context(&header)?;
    let segments = program_headers(bytes, &header, ctx)?;
    let interpreter = interpreter(bytes, &segments)?;
    let needed = needed_libraries(bytes, &segments, ctx)?;
    Ok(ElfInfo {
        machine: header.e_machine,
        is_64_bit: ctx.is_big(),
        has_interpreter: interpreter.is_some(),
        interpreter,
        needed,
    })
}

/// Every architecture we build is little-endian, so a big-endian file is for some other machine.
fn little_endian_context(header: &Header) -> Result<Ctx> {
    let container = header.container().context("unknown ELF class")?;
    if header.e_ident.get(EI_DATA) != Some(&ELFDATA2LSB) {
        bail!("big-endian ELF");
    }
    Ok(Ctx::new(container, Endian::Little))
}

/// Without program headers there is nothing to load: a relocatable object (`.o`), say, which
/// would otherwise pass for a static executable. goblin assumes the standard entry size, so a
/// file that says otherwise would be misread; Linux refuses to run such a file too.
fn program_headers(bytes: &[u8], header: &Header, ctx: Ctx) -> Result<Vec<ProgramHeader>> {
    if header.e_phnum == 0 {
        bail!("no program headers: not a program (a relocatable object?)");
    }
    let size = ProgramHeader::size(ctx);
    if usize::from(header.e_phentsize) != size {
        bail!(
            "program headers are {} bytes each, not {size}",
            header.e_phentsize
        );
    }
    let offset = usize::try_from(header.e_phoff).context("program header offset out of range")?;
    ProgramHeader::parse(bytes, offset, header.e_phnum.into(), ctx).with_context(|| {
        format!(
            "{} program headers at offset {offset:#x} do not fit in the file",
            header.e_phnum
        )
    })
}

/// The loader reads the path only from its segment, so a path without a NUL there is malformed.
fn interpreter(bytes: &[u8], segments: &[ProgramHeader]) -> Result<Option<String>> {
    let Some(segment) = segments.iter().find(|s| s.p_type == PT_INTERP) else {
        return Ok(None);
    };
    let contents = file_range(bytes, segment.p_offset, segment.p_filesz).with_context(|| {
        format!(
            "program interpreter (PT_INTERP) at offset {:#x}, size {:#x}, does not fit in the file",
            segment.p_offset, segment.p_filesz
        )
    })?;
    let path = CStr::from_bytes_until_nul(contents)
        .context("program interpreter (PT_INTERP) path is not NUL-terminated")?;
    Ok(Some(path.to_string_lossy().into_owned()))
}

fn needed_libraries(bytes: &[u8], segments: &[ProgramHeader], ctx: Ctx) -> Result<Vec<String>> {
    let dynamic = Dynamic::parse(bytes, segments, ctx).context("dynamic segment out of range")?;
    let Some(dynamic) = dynamic else {
        return Ok(Vec::new());
    };
    let offsets: Vec<u64> = values(&dynamic.dyns, DT_NEEDED).collect();
    if offsets.is_empty() {
        return Ok(Vec::new());
    }
    let names = string_table(bytes, segments, &dynamic.dyns)?;
    offsets
        .into_iter()
        .map(|offset| {
            usize::try_from(offset)
                .ok()
                .and_then(|at| names.get_at(at))
                .map(str::to_owned)
                .with_context(|| format!("DT_NEEDED name at {offset:#x} is outside DT_STRTAB"))
        })
        .collect()
}

/// goblin's own lookup treats a DT_STRTAB it cannot place as file offset 0 and reads names from
/// the ELF header, so place it here and fail instead.
fn string_table<'a>(
    bytes: &'a [u8],
    segments: &[ProgramHeader],
    dyns: &[Dyn],
) -> Result<Strtab<'a>> {
    let address = values(dyns, DT_STRTAB)
        .next()
        .context("DT_NEEDED without DT_STRTAB")?;
    let size = values(dyns, DT_STRSZ)
        .next()
        .context("DT_STRTAB without DT_STRSZ")?;
    let offset =
        file_offset(segments, address).context("DT_STRTAB outside every loaded segment")?;
    let size = usize::try_from(size).context("DT_STRSZ out of range")?;
    Strtab::parse(bytes, offset, size, STRTAB_DELIMITER).context("DT_STRTAB out of range")
}

fn values(dyns: &[Dyn], tag: u64) -> impl Iterator<Item = u64> + '_ {
    dyns.iter().filter(move |d| d.d_tag == tag).map(|d| d.d_val)
}

/// Where in the file the byte loaded at `address` comes from. A segment whose end passes 2^64
/// cannot be loaded, so it holds nothing.
fn file_offset(segments: &[ProgramHeader], address: u64) -> Option<usize> {
    segments
        .iter()
        .filter(|s| s.p_type == PT_LOAD)
        .find_map(|s| {
            let end = s.p_vaddr.checked_add(s.p_filesz)?;
            if !(s.p_vaddr..end).contains(&address) {
                return None;
            }
            s.p_offset.checked_add(address - s.p_vaddr)
        })
        .and_then(|offset| usize::try_from(offset).ok())
}

/// `size` bytes at `offset`, or `None` if they are not all inside the file.
fn file_range(bytes: &[u8], offset: u64, size: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    bytes.get(start..end)
}

/// Fails unless the binary is a static executable for `arch`.
pub fn check(path: &Utf8Path, arch: Arch) -> Result<ElfInfo> {
    let info = read(path)?;
    if info.machine != arch.elf_machine() {
        bail!(
            "{path} is built for ELF machine {}, not {arch} ({}); the C compiler or GOARCH is wrong",
            info.machine,
            arch.elf_machine()
        );
    }
    if info.has_interpreter {
        bail!("{path} is dynamically linked (it names a program interpreter); it must link statically against musl");
    }
    Ok(info)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod malformed;
