//! Malformed ELF files, as images may carry them: each must be an error, never a panic.

use super::*;

const PT_NULL: u64 = 0;
const PT_LOAD: u64 = 1;
const PT_DYNAMIC: u64 = 2;
const PT_INTERP: u64 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const DT_DEBUG: u64 = 21;
/// Where the fixture's single PT_LOAD maps file offset 0.
const BASE: u64 = 0x40_0000;
const INTERPRETER: &[u8] = b"/lib/ld-musl.so.1\0";
const STRTAB: &[u8] = b"\0libc.so\0";
/// Offset of "libc.so" in STRTAB.
const LIBC: u64 = 1;

/// Program headers of the fixture, by index.
const INTERP: usize = 0;
const LOAD: usize = 1;
const DYNAMIC: usize = 2;
/// Dynamic entries of the fixture, by index: DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_NULL.
const NEEDED: usize = 0;
const STRTAB_ENTRY: usize = 1;

/// Where the fixture put things, so that a test can corrupt exactly one field.
struct Fixture {
    bytes: Vec<u8>,
    is_64_bit: bool,
    strtab_at: usize,
    dynamic_at: usize,
}

impl Fixture {
    /// A well-formed little-endian x86-64 (or ARM, for ELF32) executable that needs libc.so.
    fn new(is_64_bit: bool) -> Fixture {
        let interpreter_at = header_size(is_64_bit) + 3 * phentsize(is_64_bit);
        let strtab_at = interpreter_at + INTERPRETER.len();
        let dynamic_at = strtab_at + STRTAB.len();
        let len = dynamic_at + 4 * 2 * word(is_64_bit);
        let mut f = Fixture {
            bytes: vec![0; len],
            is_64_bit,
            strtab_at,
            dynamic_at,
        };
        f.bytes[..4].copy_from_slice(b"\x7fELF");
        f.bytes[4] = if is_64_bit { 2 } else { 1 };
        f.bytes[5] = 1; // little-endian
        f.bytes[6] = 1; // EV_CURRENT
        f.put(16, 2, 2); // ET_EXEC
        f.put(18, 2, if is_64_bit { 62 } else { 40 });
        f.put(20, 4, 1); // e_version
        f.set_header(Phoff, header_size(is_64_bit) as u64);
        f.set_header(Phentsize, phentsize(is_64_bit) as u64);
        f.set_header(Phnum, 3);
        f.set_segment(INTERP, PT_INTERP, interpreter_at, INTERPRETER.len());
        f.set_segment(LOAD, PT_LOAD, 0, len);
        f.set_segment(DYNAMIC, PT_DYNAMIC, dynamic_at, len - dynamic_at);
        f.bytes[interpreter_at..strtab_at].copy_from_slice(INTERPRETER);
        f.bytes[strtab_at..dynamic_at].copy_from_slice(STRTAB);
        f.set_dyn(NEEDED, DT_NEEDED, LIBC);
        f.set_dyn(STRTAB_ENTRY, DT_STRTAB, BASE + strtab_at as u64);
        f.set_dyn(2, DT_STRSZ, STRTAB.len() as u64);
        f.set_dyn(3, DT_NULL, 0);
        f
    }

    /// The largest value a word of this class holds.
    fn max(&self) -> u64 {
        if self.is_64_bit {
            u64::MAX
        } else {
            u32::MAX.into()
        }
    }

    fn put(&mut self, at: usize, width: usize, value: u64) {
        self.bytes[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    }

    fn set_header(&mut self, field: HeaderField, value: u64) {
        let (at64, at32, width) = match field {
            Phoff => (32, 28, word(self.is_64_bit)),
            Phentsize => (54, 42, 2),
            Phnum => (56, 44, 2),
        };
        self.put(if self.is_64_bit { at64 } else { at32 }, width, value);
    }

    fn set_segment(&mut self, index: usize, kind: u64, offset: usize, size: usize) {
        self.set_ph(index, Type, kind);
        self.set_ph(index, Offset, offset as u64);
        self.set_ph(index, Vaddr, BASE + offset as u64);
        self.set_ph(index, Filesz, size as u64);
        self.set_ph(index, Memsz, size as u64);
    }

    fn set_ph(&mut self, index: usize, field: PhField, value: u64) {
        let (at64, at32) = match field {
            Type => (0, 0),
            Offset => (8, 4),
            Vaddr => (16, 8),
            Filesz => (32, 16),
            Memsz => (40, 20),
        };
        let at = header_size(self.is_64_bit)
            + index * phentsize(self.is_64_bit)
            + if self.is_64_bit { at64 } else { at32 };
        let width = if field == Type {
            4
        } else {
            word(self.is_64_bit)
        };
        self.put(at, width, value);
    }

    fn set_dyn(&mut self, index: usize, tag: u64, value: u64) {
        let w = word(self.is_64_bit);
        let at = self.dynamic_at + index * 2 * w;
        self.put(at, w, tag);
        self.put(at + w, w, value);
    }

    fn assert_err(&self, why: &str) {
        if let Ok(info) = parse(&self.bytes) {
            let class = if self.is_64_bit { 64 } else { 32 };
            panic!("ELF{class} {why}: parsed as {info:?}");
        }
    }
}

#[derive(Clone, Copy)]
enum HeaderField {
    Phoff,
    Phentsize,
    Phnum,
}
use HeaderField::*;

#[derive(Clone, Copy, PartialEq)]
enum PhField {
    Type,
    Offset,
    Vaddr,
    Filesz,
    Memsz,
}
use PhField::*;

fn word(is_64_bit: bool) -> usize {
    if is_64_bit {
        8
    } else {
        4
    }
}

fn header_size(is_64_bit: bool) -> usize {
    if is_64_bit {
        64
    } else {
        52
    }
}

fn phentsize(is_64_bit: bool) -> usize {
    if is_64_bit {
        56
    } else {
        32
    }
}

/// One test per ELF class, so that a failure names the class.
macro_rules! both_classes {
    ($($name:ident($f:ident) $body:block)*) => {$(
        mod $name {
            use super::*;
            fn run($f: Fixture) $body
            #[test]
            fn elf32() {
                run(Fixture::new(false));
            }
            #[test]
            fn elf64() {
                run(Fixture::new(true));
            }
        }
    )*};
}

both_classes! {
    the_fixture_is_well_formed(f) {
        let info = parse(&f.bytes).unwrap();
        assert_eq!(info.is_64_bit, f.is_64_bit);
        assert_eq!(info.machine, if f.is_64_bit { 62 } else { 40 });
        assert_eq!(info.interpreter.as_deref(), Some("/lib/ld-musl.so.1"));
        assert_eq!(info.needed, ["libc.so"]);
    }

    a_static_fixture_is_well_formed(f) {
        let mut f = f;
        f.set_ph(INTERP, Type, PT_NULL);
        f.set_dyn(NEEDED, DT_DEBUG, 0);
        let info = parse(&f.bytes).unwrap();
        assert!(!info.has_interpreter);
        assert_eq!(info.interpreter, None);
        assert!(info.needed.is_empty());
    }

    every_truncation_is_an_error(f) {
        for len in 0..f.bytes.len() {
            assert!(parse(&f.bytes[..len]).is_err(), "cut to {len} bytes");
        }
    }

    header_truncated_after_the_program_header_fields(f) {
        let mut f = f;
        f.set_header(Phnum, 0);
        f.bytes.truncate(if f.is_64_bit { 58 } else { 46 });
        f.assert_err("truncated header");
    }

    program_headers_past_the_end(f) {
        let mut f = f;
        let len = f.bytes.len() as u64;
        f.set_header(Phoff, len);
        f.assert_err("e_phoff past the end");
    }

    program_header_offset_overflows(f) {
        let mut f = f;
        let max = f.max();
        f.set_header(Phoff, max - 1);
        f.assert_err("e_phoff overflows");
    }

    program_header_count_past_the_end(f) {
        let mut f = f;
        f.set_header(Phnum, u16::MAX.into());
        f.assert_err("e_phnum past the end");
    }

    relocatable_object_without_program_headers(f) {
        let mut f = f;
        f.put(16, 2, 1); // ET_REL
        f.set_header(Phentsize, 0);
        f.set_header(Phnum, 0);
        f.assert_err("no program headers");
    }

    program_header_size_is_not_the_class_size(f) {
        let mut f = f;
        f.set_header(Phentsize, 0);
        f.assert_err("e_phentsize 0");
    }

    interpreter_past_the_end(f) {
        let mut f = f;
        let max = f.max();
        f.set_ph(INTERP, Offset, max);
        f.assert_err("PT_INTERP offset past the end");
    }

    interpreter_size_overflows(f) {
        let mut f = f;
        let (last, max) = (f.bytes.len() as u64 - 1, f.max());
        f.set_ph(INTERP, Offset, last);
        f.set_ph(INTERP, Filesz, max);
        f.assert_err("PT_INTERP size overflows");
    }

    interpreter_unterminated_in_its_segment(f) {
        let mut f = f;
        f.set_ph(INTERP, Filesz, 5);
        f.assert_err("PT_INTERP without a NUL in its segment");
    }

    dynamic_segment_past_the_end(f) {
        let mut f = f;
        let len = f.bytes.len() as u64;
        f.set_ph(DYNAMIC, Offset, len);
        f.assert_err("PT_DYNAMIC past the end");
    }

    dynamic_segment_offset_overflows(f) {
        let mut f = f;
        let max = f.max();
        f.set_ph(DYNAMIC, Offset, max - 7);
        f.assert_err("PT_DYNAMIC offset overflows");
    }

    dynamic_segment_longer_than_the_file(f) {
        let mut f = f;
        let max = f.max();
        f.set_ph(DYNAMIC, Filesz, max);
        f.assert_err("PT_DYNAMIC size past the end");
    }

    string_table_outside_every_segment(f) {
        let mut f = f;
        let outside = BASE + 2 * f.bytes.len() as u64;
        f.set_dyn(STRTAB_ENTRY, DT_STRTAB, outside);
        f.assert_err("DT_STRTAB outside the PT_LOAD");
    }

    string_table_segment_offset_overflows(f) {
        let mut f = f;
        let max = f.max();
        f.set_ph(LOAD, Offset, max);
        f.assert_err("PT_LOAD offset overflows");
    }

    needed_without_string_table(f) {
        let mut f = f;
        f.set_dyn(STRTAB_ENTRY, DT_DEBUG, 0);
        f.assert_err("DT_NEEDED without DT_STRTAB");
    }

    needed_name_offset_overflows(f) {
        let mut f = f;
        let max = f.max();
        f.set_dyn(NEEDED, DT_NEEDED, max);
        f.assert_err("DT_NEEDED offset overflows");
    }

    needed_name_outside_the_string_table(f) {
        let mut f = f;
        // Past DT_STRSZ, inside the file: the dynamic array's bytes, not a name.
        f.set_dyn(NEEDED, DT_NEEDED, STRTAB.len() as u64 + 1);
        f.assert_err("DT_NEEDED past DT_STRSZ");
    }

    big_endian(f) {
        let mut f = f;
        f.bytes[5] = 2;
        f.assert_err("big-endian");
    }

    unknown_class(f) {
        let mut f = f;
        f.bytes[4] = 3;
        f.assert_err("ELFCLASS 3");
    }

    no_corrupted_byte_or_word_panics(f) {
        let w = word(f.is_64_bit);
        for at in 0..f.bytes.len() {
            for value in [0x00, 0x7f, 0x80, 0xff] {
                let mut bytes = f.bytes.clone();
                bytes[at] = value;
                let _ = parse(&bytes);
            }
            // A whole word of ones: the largest offset, size or address there is.
            let mut bytes = f.bytes.clone();
            let end = (at + w).min(bytes.len());
            bytes[at..end].fill(0xff);
            let _ = parse(&bytes);
        }
    }
}

/// In ELF64 a segment's end can pass 2^64, which no loader maps.
#[test]
fn string_table_segment_wraps_the_address_space() {
    let mut f = Fixture::new(true);
    let strtab_at = f.strtab_at as u64;
    f.set_ph(LOAD, Vaddr, u64::MAX - strtab_at);
    f.set_dyn(STRTAB_ENTRY, DT_STRTAB, u64::MAX);
    f.assert_err("PT_LOAD wraps past 2^64");
}

#[test]
fn a_truncated_real_binary_is_an_error() {
    let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    for len in [16, 63, 64, 1000, 4096] {
        assert!(parse(&bytes[..len]).is_err(), "cut to {len} bytes");
    }
}

fn write(bytes: &[u8]) -> (tempfile::TempDir, camino::Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8Path::from_path(dir.path()).unwrap().join("program");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

#[test]
fn check_accepts_a_static_program_for_its_arch() {
    let mut f = Fixture::new(true);
    f.set_ph(INTERP, Type, PT_NULL);
    let (_dir, path) = write(&f.bytes);
    assert_eq!(check(&path, Arch::Amd64).unwrap().machine, 62);
}

#[test]
fn check_names_the_wrong_machine() {
    let mut f = Fixture::new(true);
    f.set_ph(INTERP, Type, PT_NULL);
    let (_dir, path) = write(&f.bytes);
    let message = format!("{:#}", check(&path, Arch::Arm64).unwrap_err());
    assert!(
        message.contains("ELF machine 62, not arm64 (183); the C compiler or GOARCH is wrong"),
        "{message}"
    );
}

#[test]
fn check_rejects_a_dynamic_program() {
    let (_dir, path) = write(&Fixture::new(true).bytes);
    let message = format!("{:#}", check(&path, Arch::Amd64).unwrap_err());
    assert!(
        message.contains("is dynamically linked (it names a program interpreter); it must link statically against musl"),
        "{message}"
    );
}

#[test]
fn check_reports_a_malformed_file_as_such() {
    let mut f = Fixture::new(true);
    f.set_header(Phnum, u16::MAX.into());
    let (_dir, path) = write(&f.bytes);
    let message = format!("{:#}", check(&path, Arch::Amd64).unwrap_err());
    assert!(
        message.contains("is not a valid ELF executable"),
        "{message}"
    );
}
