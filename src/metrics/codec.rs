//! The on-disk form of a block of raw samples: timestamps and values, each
//! compressed losslessly with pco (delta encoding, float-multiple and
//! integer detection: regular 15 s timestamps cost well under a bit each,
//! integer-valued or fixed-decimal values a byte or two). One blob per
//! series and hour, so SQLite's per-row overhead is shared by ~240 samples.
//!
//! Layout: `1u8` (version), `u32` LE length of the timestamp part, the
//! timestamp part, the value part.

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("metrics block: {0}")]
    Corrupt(String),
}

fn corrupt(e: impl std::fmt::Display) -> CodecError {
    CodecError::Corrupt(e.to_string())
}

/// Compresses `ts` (ascending) and `values` (same length, finite).
pub fn encode(ts: &[i64], values: &[f64]) -> Result<Vec<u8>, CodecError> {
    if ts.len() != values.len() {
        return Err(corrupt("timestamps and values differ in length"));
    }
    let config = pco::ChunkConfig::default();
    let t = pco::standalone::simple_compress(ts, &config).map_err(corrupt)?;
    let v = pco::standalone::simple_compress(values, &config).map_err(corrupt)?;
    let len = u32::try_from(t.len()).map_err(corrupt)?;
    let mut out = Vec::with_capacity(5 + t.len() + v.len());
    out.push(1u8);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&t);
    out.extend_from_slice(&v);
    Ok(out)
}

/// The timestamps and values of a block written by [`encode`].
pub fn decode(data: &[u8]) -> Result<(Vec<i64>, Vec<f64>), CodecError> {
    let (&version, rest) = data.split_first().ok_or_else(|| corrupt("empty"))?;
    if version != 1 {
        return Err(corrupt(format!("unknown version {version}")));
    }
    let (len, rest) = rest
        .split_at_checked(4)
        .ok_or_else(|| corrupt("truncated"))?;
    let len: [u8; 4] = len.try_into().map_err(corrupt)?;
    let (t, v) = rest
        .split_at_checked(u32::from_le_bytes(len) as usize)
        .ok_or_else(|| corrupt("truncated"))?;
    let ts: Vec<i64> = pco::standalone::simple_decompress(t).map_err(corrupt)?;
    let values: Vec<f64> = pco::standalone::simple_decompress(v).map_err(corrupt)?;
    if ts.len() != values.len() {
        return Err(corrupt("timestamps and values differ in length"));
    }
    Ok((ts, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_bit_exact_and_compresses_regular_series() {
        let ts: Vec<i64> = (0..240).map(|i| 1_700_000_000 + i * 15).collect();
        let values: Vec<f64> = (0..240)
            .map(|i| (f64::from(i % 17) * 12.345).round() / 1000.0 + 0.1)
            .collect();
        let blob = encode(&ts, &values).unwrap();
        let (t2, v2) = decode(&blob).unwrap();
        assert_eq!(t2, ts);
        assert_eq!(
            v2.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            values.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert!(blob.len() < 240 * 4, "{} bytes", blob.len());
        // Gaps (missing timestamps) survive as they are.
        let ts: Vec<i64> = vec![0, 15, 30, 600, 615];
        let (t2, _) = decode(&encode(&ts, &[1.0; 5]).unwrap()).unwrap();
        assert_eq!(t2, ts);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\x02abc",
            b"\x01\xff\xff\xff\xff",
            b"\x01\x02\x00\x00\x00ab",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        assert!(encode(&[1], &[]).is_err());
    }
}
