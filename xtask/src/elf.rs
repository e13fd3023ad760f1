//! Just enough ELF to check an artifact: its machine, and that it is statically linked.

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use kubelet_upstream::Arch;

const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const CLASS_32: u8 = 1;
const CLASS_64: u8 = 2;
const LITTLE_ENDIAN: u8 = 1;
/// A program header that names a dynamic loader: the binary is dynamically linked.
const PT_INTERP: u32 = 3;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

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

/// Little-endian reads that fail instead of panicking on truncated input.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn bytes(&self, at: usize, len: usize) -> Result<&[u8]> {
        self.0
            .get(at..at.checked_add(len).context("offset overflow")?)
            .context("truncated ELF")
    }
    fn u16(&self, at: usize) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.bytes(at, 2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&self, at: usize) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.bytes(at, 4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&self, at: usize) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.bytes(at, 8)?.try_into().expect("8 bytes"),
        ))
    }
    /// A word of the file's class: 8 bytes in ELF64, 4 in ELF32.
    fn word(&self, at: usize, is_64_bit: bool) -> Result<u64> {
        if is_64_bit {
            self.u64(at)
        } else {
            self.u32(at).map(u64::from)
        }
    }
    fn c_string(&self, at: usize) -> Result<String> {
        let rest = self.0.get(at..).context("string offset out of range")?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .context("unterminated string")?;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
}

/// One program header: type, file offset, virtual address and size in the file.
struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

pub fn parse(bytes: &[u8]) -> Result<ElfInfo> {
    if bytes.len() < 52 || bytes[..4] != ELF_MAGIC {
        bail!("no ELF header");
    }
    if bytes[5] != LITTLE_ENDIAN {
        bail!("big-endian ELF");
    }
    let is_64_bit = match bytes[4] {
        CLASS_64 => true,
        CLASS_32 => false,
        other => bail!("unknown ELF class {other}"),
    };
    let r = Reader(bytes);
    let machine = r.u16(18)?;
    let (phoff, phentsize, phnum) = if is_64_bit {
        (
            r.u64(32)? as usize,
            r.u16(54)? as usize,
            r.u16(56)? as usize,
        )
    } else {
        (
            r.u32(28)? as usize,
            r.u16(42)? as usize,
            r.u16(44)? as usize,
        )
    };
    let mut segments = Vec::with_capacity(phnum);
    for index in 0..phnum {
        let at = phoff + index * phentsize;
        let segment = if is_64_bit {
            Segment {
                kind: r.u32(at)?,
                offset: r.u64(at + 8)?,
                vaddr: r.u64(at + 16)?,
                filesz: r.u64(at + 32)?,
            }
        } else {
            Segment {
                kind: r.u32(at)?,
                offset: r.u32(at + 4)?.into(),
                vaddr: r.u32(at + 8)?.into(),
                filesz: r.u32(at + 16)?.into(),
            }
        };
        segments.push(segment);
    }
    let interpreter = match segments.iter().find(|s| s.kind == PT_INTERP) {
        Some(s) => Some(r.c_string(s.offset as usize)?),
        None => None,
    };
    let needed = match segments.iter().find(|s| s.kind == PT_DYNAMIC) {
        Some(dynamic) => needed_libraries(&r, &segments, dynamic, is_64_bit)?,
        None => Vec::new(),
    };
    Ok(ElfInfo {
        machine,
        is_64_bit,
        has_interpreter: interpreter.is_some(),
        interpreter,
        needed,
    })
}

fn needed_libraries(
    r: &Reader<'_>,
    segments: &[Segment],
    dynamic: &Segment,
    is_64_bit: bool,
) -> Result<Vec<String>> {
    let entry_size = if is_64_bit { 16 } else { 8 };
    let word = entry_size / 2;
    let mut strtab_vaddr = None;
    let mut needed_offsets = Vec::new();
    for index in 0..(dynamic.filesz as usize / entry_size) {
        let at = dynamic.offset as usize + index * entry_size;
        let tag = r.word(at, is_64_bit)?;
        let value = r.word(at + word, is_64_bit)?;
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed_offsets.push(value),
            DT_STRTAB => strtab_vaddr = Some(value),
            _ => {}
        }
    }
    if needed_offsets.is_empty() {
        return Ok(Vec::new());
    }
    let strtab_vaddr = strtab_vaddr.context("DT_NEEDED without DT_STRTAB")?;
    let load = segments
        .iter()
        .find(|s| s.kind == PT_LOAD && s.vaddr <= strtab_vaddr && strtab_vaddr < s.vaddr + s.filesz)
        .context("DT_STRTAB outside every loaded segment")?;
    let strtab = (strtab_vaddr - load.vaddr + load.offset) as usize;
    needed_offsets
        .iter()
        .map(|&offset| r.c_string(strtab + offset as usize))
        .collect()
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
mod tests {
    use super::*;

    #[test]
    fn reads_the_running_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let info = parse(&std::fs::read(exe).unwrap()).unwrap();
        assert_eq!(Some(info.machine), Arch::host().map(Arch::elf_machine));
        assert!(info.is_64_bit);
        // Rust test binaries link the host's C library dynamically.
        assert!(info.interpreter.is_some());
        assert!(
            info.needed.iter().any(|lib| lib.starts_with("libc.so")),
            "{:?}",
            info.needed
        );
    }

    #[test]
    fn rejects_non_elf() {
        assert!(parse(b"#!/bin/sh\necho not an executable, just a script with text").is_err());
        assert!(parse(&[0x7f, b'E', b'L', b'F']).is_err());
    }

    #[test]
    fn finds_an_interpreter_header() {
        // A minimal 32-bit ELF header with one PT_INTERP program header right after it.
        let mut bytes = vec![0u8; 52 + 32];
        bytes[..4].copy_from_slice(&ELF_MAGIC);
        bytes[4] = CLASS_32;
        bytes[5] = LITTLE_ENDIAN;
        bytes[18..20].copy_from_slice(&40u16.to_le_bytes());
        bytes[28..32].copy_from_slice(&52u32.to_le_bytes());
        bytes[42..44].copy_from_slice(&32u16.to_le_bytes());
        bytes[44..46].copy_from_slice(&1u16.to_le_bytes());
        bytes[52..56].copy_from_slice(&PT_INTERP.to_le_bytes());
        bytes.extend_from_slice(b"/lib/ld-musl-armhf.so.1\0");
        bytes[56..60].copy_from_slice(&84u32.to_le_bytes());
        let info = parse(&bytes).unwrap();
        assert_eq!(info.machine, Arch::Armv7.elf_machine());
        assert!(info.has_interpreter);
        assert_eq!(info.interpreter.as_deref(), Some("/lib/ld-musl-armhf.so.1"));
        bytes[52..56].copy_from_slice(&1u32.to_le_bytes());
        assert!(!parse(&bytes).unwrap().has_interpreter);
    }
}
