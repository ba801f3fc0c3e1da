//! Unit tests of the transfers (in-memory remote, temporary files).

use super::*;

fn written(size: u64, compressed: bool, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let f = tempfile::tempfile()?;
    let o = RemoteObject {
        compressed,
        stored_size: body.len() as u64,
    };
    write_checked(&f, size, o, body)?;
    let mut out = Vec::new();
    std::io::Seek::rewind(&mut &f)?;
    (&f).read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn stored_bytes_are_decompressed_bounded_and_checked_for_a_whole_frame() {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let z = zstd::bulk::compress(&data, WIRE_LEVEL).expect("compress");
    assert!(written(300_000, true, &z).expect("whole") == data);
    assert!(written(300_000, false, &data).expect("raw") == data);
    let e = written(300_000, true, &z[..z.len() / 2]).expect_err("truncated");
    assert!(e.to_string().contains("truncated"), "{e}");
    // A bomb stops at the size the manifest gives.
    let bomb = zstd::bulk::compress(&vec![0u8; 50 << 20], 3).expect("bomb");
    let e = written(1000, true, &bomb).expect_err("bomb");
    assert!(e.to_string().contains("more than the 1000 bytes"), "{e}");
    let e = written(10, false, b"eleven byte").expect_err("long");
    assert!(e.to_string().contains("more than"), "{e}");
    let e = written(12, false, b"eleven byte").expect_err("short");
    assert!(e.to_string().contains("11 bytes"), "{e}");
}

#[test]
fn index_finds_what_the_remote_holds_by_folder_or_by_range() {
    let c = Client::over(
        "mem",
        "memory",
        std::sync::Arc::new(object_store::memory::InMemory::new()),
        "p",
    )
    .expect("client");
    let held: Vec<Hash> = (0..400u32).map(|i| Hash::of(&i.to_le_bytes())).collect();
    let absent: Vec<Hash> = (400..450u32).map(|i| Hash::of(&i.to_le_bytes())).collect();
    c.block_on(async {
        for (i, h) in held.iter().enumerate() {
            let key = layout::object_key(h, i % 2 == 0);
            c.put(&key, Bytes::from(vec![0u8; i])).await?;
        }
        // Many folders: read by ranges.
        let all: Vec<Hash> = held.iter().chain(&absent).copied().collect();
        let found = index(&c, &all).await?;
        assert_eq!(found.len(), held.len());
        for (i, h) in held.iter().enumerate() {
            let o = found[h];
            assert_eq!((o.compressed, o.stored_size), (i % 2 == 0, i as u64));
        }
        // Few: by folder.
        let few = [held[7], absent[0]];
        let found = index(&c, &few).await?;
        assert!(found.contains_key(&held[7]) && !found.contains_key(&absent[0]));
        Ok::<_, RemoteError>(())
    })
    .expect("index");
}

#[test]
fn runs_of_zeros_become_holes() {
    use std::os::unix::fs::MetadataExt;
    let mut data = vec![0u8; 8 << 20];
    data[100] = 1;
    data[(8 << 20) - 1] = 2;
    let f = tempfile::tempfile().expect("tempfile");
    let o = RemoteObject {
        compressed: false,
        stored_size: data.len() as u64,
    };
    write_checked(&f, data.len() as u64, o, &data).expect("write");
    let m = f.metadata().expect("stat");
    assert_eq!(m.len(), 8 << 20);
    assert!(m.blocks() * 512 < 1 << 20, "{} blocks", m.blocks());
    let mut back = Vec::new();
    std::io::Seek::rewind(&mut &f).expect("rewind");
    (&f).read_to_end(&mut back).expect("read");
    assert!(back == data, "the bytes differ");
}
