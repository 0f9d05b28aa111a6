//! The part of crc-fast's interface that aws-smithy-checksums uses: [`CrcAlgorithm`]
//! (three of its variants), [`Digest`] and [`checksum`].
//!
//! Each CRC is the reflected, table-driven form processed eight bytes at a time
//! ("slicing-by-8"); the tables are computed by `const fn` at compile time. Parameters
//! and check values (the CRC of the ASCII bytes `123456789`) are those of the
//! catalogue of parametrised CRC algorithms, which the tests pin.

/// The CRCs S3 uses for its `x-amz-checksum-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CrcAlgorithm {
    /// CRC-32/ISO-HDLC: S3's `CRC32` (zlib's crc32).
    Crc32IsoHdlc,
    /// CRC-32/ISCSI: S3's `CRC32C` (Castagnoli).
    Crc32Iscsi,
    /// CRC-64/NVME: S3's `CRC64NVME`.
    Crc64Nvme,
}

type Tables = [[u64; 256]; 8];

/// `t[0]` is the byte-at-a-time table; `t[k][b]` is the CRC of byte `b` followed by `k`
/// zero bytes, so eight table lookups advance the register by eight input bytes.
const fn tables(poly: u64) -> Tables {
    let mut t = [[0u64; 256]; 8];
    let mut b = 0;
    while b < 256 {
        let mut crc = b as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ poly } else { crc >> 1 };
            bit += 1;
        }
        t[0][b] = crc;
        b += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut b = 0;
        while b < 256 {
            let prev = t[k - 1][b];
            t[k][b] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            b += 1;
        }
        k += 1;
    }
    t
}

static CRC32_ISO_HDLC: Tables = tables(CrcAlgorithm::Crc32IsoHdlc.poly());
static CRC32_ISCSI: Tables = tables(CrcAlgorithm::Crc32Iscsi.poly());
static CRC64_NVME: Tables = tables(CrcAlgorithm::Crc64Nvme.poly());

impl CrcAlgorithm {
    /// The reflected polynomial. All three start from all ones and end XORed with all
    /// ones ([`CrcAlgorithm::ones`]).
    const fn poly(self) -> u64 {
        match self {
            CrcAlgorithm::Crc32IsoHdlc => 0xEDB8_8320,
            CrcAlgorithm::Crc32Iscsi => 0x82F6_3B78,
            CrcAlgorithm::Crc64Nvme => 0x9A6C_9329_AC4B_C9B5,
        }
    }

    fn tables(self) -> &'static Tables {
        match self {
            CrcAlgorithm::Crc32IsoHdlc => &CRC32_ISO_HDLC,
            CrcAlgorithm::Crc32Iscsi => &CRC32_ISCSI,
            CrcAlgorithm::Crc64Nvme => &CRC64_NVME,
        }
    }

    /// All ones in the CRC's width: the initial register and the final XOR.
    fn ones(self) -> u64 {
        match self {
            CrcAlgorithm::Crc32IsoHdlc | CrcAlgorithm::Crc32Iscsi => u64::from(u32::MAX),
            CrcAlgorithm::Crc64Nvme => u64::MAX,
        }
    }
}

/// Advances a reflected CRC register over `bytes`. The register holds the CRC in its
/// low bits (32 or 64); the tables of a 32-bit CRC have zero high halves, so the same
/// loop serves both widths.
fn advance(t: &Tables, mut crc: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let x = crc ^ u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        crc = t[7][(x & 0xff) as usize]
            ^ t[6][((x >> 8) & 0xff) as usize]
            ^ t[5][((x >> 16) & 0xff) as usize]
            ^ t[4][((x >> 24) & 0xff) as usize]
            ^ t[3][((x >> 32) & 0xff) as usize]
            ^ t[2][((x >> 40) & 0xff) as usize]
            ^ t[1][((x >> 48) & 0xff) as usize]
            ^ t[0][(x >> 56) as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ u64::from(b)) & 0xff) as usize];
    }
    crc
}

/// A running CRC: feed it with [`Digest::update`], read it with [`Digest::finalize`].
#[derive(Debug, Clone)]
pub struct Digest {
    algorithm: CrcAlgorithm,
    register: u64,
}

impl Digest {
    pub fn new(algorithm: CrcAlgorithm) -> Self {
        Digest { algorithm, register: algorithm.ones() }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.register = advance(self.algorithm.tables(), self.register, bytes);
    }

    /// The CRC of everything fed so far; the digest can go on being fed.
    pub fn finalize(&self) -> u64 {
        self.register ^ self.algorithm.ones()
    }

    pub fn reset(&mut self) {
        self.register = self.algorithm.ones();
    }
}

/// The CRC of `bytes` in one call.
pub fn checksum(algorithm: CrcAlgorithm, bytes: &[u8]) -> u64 {
    let mut digest = Digest::new(algorithm);
    digest.update(bytes);
    digest.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [CrcAlgorithm; 3] = [CrcAlgorithm::Crc32IsoHdlc, CrcAlgorithm::Crc32Iscsi, CrcAlgorithm::Crc64Nvme];

    /// Bit at a time, straight from the definition: the reference the tables must match.
    fn bitwise(algorithm: CrcAlgorithm, bytes: &[u8]) -> u64 {
        let poly = algorithm.poly();
        let mut crc = algorithm.ones();
        for &b in bytes {
            crc ^= u64::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ poly } else { crc >> 1 };
            }
        }
        crc ^ algorithm.ones()
    }

    /// Deterministic bytes of every value, without a random-number dependency.
    fn sample(len: usize) -> Vec<u8> {
        let mut x: u32 = 0x9E37_79B9;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn each_crc_gives_the_catalogue_check_value_for_123456789() {
        assert_eq!(checksum(CrcAlgorithm::Crc32IsoHdlc, b"123456789"), 0xCBF4_3926);
        assert_eq!(checksum(CrcAlgorithm::Crc32Iscsi, b"123456789"), 0xE306_9283);
        assert_eq!(checksum(CrcAlgorithm::Crc64Nvme, b"123456789"), 0xAE8B_1486_0A79_9888);
    }

    #[test]
    fn the_crc_of_nothing_is_zero_for_each() {
        for a in ALL {
            assert_eq!(checksum(a, b""), 0, "{a:?}");
        }
    }

    #[test]
    fn the_crc32_and_crc32c_of_hello_world_match_pythons() {
        // zlib's crc32 as Python's binascii.crc32 gives it, and the Castagnoli CRC from
        // a bit-at-a-time Python loop: the values moto puts in S3's checksum headers.
        assert_eq!(checksum(CrcAlgorithm::Crc32IsoHdlc, b"Hello world"), 0x8BD6_9E52);
        assert_eq!(checksum(CrcAlgorithm::Crc32Iscsi, b"Hello world"), 0x72B5_1F78);
    }

    #[test]
    fn the_sliced_tables_agree_with_the_bitwise_definition_at_every_length_and_alignment() {
        let data = sample(300);
        for a in ALL {
            for start in 0..8 {
                for len in 0..(data.len() - start) {
                    let bytes = &data[start..start + len];
                    assert_eq!(checksum(a, bytes), bitwise(a, bytes), "{a:?} start {start} len {len}");
                }
            }
        }
    }

    #[test]
    fn feeding_a_digest_in_pieces_gives_the_one_call_checksum_and_reset_starts_over() {
        let data = sample(1000);
        for a in ALL {
            let whole = checksum(a, &data);
            for split in [0, 1, 7, 8, 9, 500, 999, 1000] {
                let mut d = Digest::new(a);
                d.update(&data[..split]);
                d.update(&data[split..]);
                assert_eq!(d.finalize(), whole, "{a:?} split at {split}");
            }
            let mut d = Digest::new(a);
            d.update(b"something else");
            d.reset();
            d.update(&data);
            assert_eq!(d.finalize(), whole, "{a:?} after reset");
        }
    }

    #[test]
    fn crc32_iso_hdlc_equals_crc32fast_on_every_length_up_to_a_few_kib() {
        let data = sample(5000);
        for len in (0..600).chain([1023, 1024, 1025, 4096, 5000]) {
            assert_eq!(
                checksum(CrcAlgorithm::Crc32IsoHdlc, &data[..len]),
                u64::from(crc32fast::hash(&data[..len])),
                "len {len}"
            );
        }
    }

    #[test]
    fn a_32_bit_crc_never_sets_the_high_half() {
        let data = sample(4096);
        for a in [CrcAlgorithm::Crc32IsoHdlc, CrcAlgorithm::Crc32Iscsi] {
            for n in [1, 13, 4096] {
                assert_eq!(checksum(a, &data[..n]) >> 32, 0, "{a:?}");
            }
        }
    }
}
