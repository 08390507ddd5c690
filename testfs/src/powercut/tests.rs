//! The two-image logic of the model, without FUSE: what each operation does to the live
//! image and what fsync and fsyncdir make durable.

use std::collections::BTreeMap;
use std::ffi::OsStr;

use super::image::{Image, Meta};
use super::model::{Ino, Model, SetAttr, Stop, ROOT};

/// Every path of an image: `Some(content)` for files, `None` for directories.
type Flat = BTreeMap<String, Option<String>>;

fn flat(image: &Image) -> Flat {
    fn walk(image: &Image, path: &str, out: &mut Flat) {
        match image {
            Image::File { data, .. } => {
                let bytes = data.read(0, u32::MAX);
                out.insert(path.to_owned(), Some(String::from_utf8_lossy(&bytes).into_owned()));
            }
            Image::Dir { entries, .. } => {
                if !path.is_empty() {
                    out.insert(path.to_owned(), None);
                }
                for (name, child) in entries {
                    let name = name.to_string_lossy();
                    let child_path =
                        if path.is_empty() { name.into_owned() } else { format!("{path}/{name}") };
                    walk(child, &child_path, out);
                }
            }
        }
    }
    let mut out = Flat::new();
    walk(image, "", &mut out);
    out
}

fn expect(pairs: &[(&str, Option<&str>)]) -> Flat {
    pairs.iter().map(|(p, c)| ((*p).to_owned(), c.map(str::to_owned))).collect()
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A model with the durable files `a` ("A") and directory `d`.
fn model() -> Model {
    let mut m = Model::from_image(Image::empty_dir(Meta::new(0o755, 0, 0)));
    let a = file(&mut m, ROOT, "a", "A");
    m.fsync(a).expect("fsync");
    m.create(ROOT, os("d"), true, Meta::new(0o755, 0, 0)).expect("mkdir");
    m.fsyncdir(ROOT).expect("fsyncdir");
    m
}

fn file(m: &mut Model, dir: Ino, name: &str, content: &str) -> Ino {
    let ino = m.create(dir, os(name), false, Meta::new(0o644, 0, 0)).expect("create").ino;
    m.write(ino, 0, content.as_bytes()).expect("write");
    ino
}

fn ino(m: &Model, dir: Ino, name: &str) -> Ino {
    m.lookup(dir, os(name)).expect("lookup").ino
}

fn durable(m: &Model) -> Flat {
    flat(&m.durable_image().0)
}

#[test]
fn data_is_durable_only_as_of_the_last_fsync() {
    let mut m = model();
    let a = ino(&m, ROOT, "a");
    m.write(a, 1, b"BC").expect("write");
    assert_eq!(durable(&m), expect(&[("a", Some("A")), ("d", None)]));
    m.fsync(a).expect("fsync");
    m.setattr(a, SetAttr { size: Some(1), ..Default::default() }).expect("truncate");
    m.write(a, 5, b"x").expect("write");
    assert_eq!(durable(&m)["a"], Some("ABC".into()), "unsynced truncate and write lost");
    assert_eq!(flat(&m.live_image())["a"], Some("A\0\0\0\0x".into()));
    let (_, s) = m.durable_image();
    assert_eq!((s.files_dropped, s.bytes_dropped, s.kept.files), (0, 6, 1));
}

#[test]
fn a_new_name_needs_a_directory_fsync_even_with_its_data_synced() {
    let mut m = model();
    let d = ino(&m, ROOT, "d");
    let f = file(&mut m, d, "f", "F");
    m.fsync(f).expect("fsync");
    let sub = m.create(d, os("sub"), true, Meta::new(0o755, 0, 0)).expect("mkdir").ino;
    file(&mut m, sub, "g", "G");
    assert_eq!(durable(&m), expect(&[("a", Some("A")), ("d", None)]));
    let (_, s) = m.durable_image();
    assert_eq!((s.files_dropped, s.bytes_dropped), (2, 2));
    m.fsyncdir(d).expect("fsyncdir");
    // sub's own entries were never synced: it survives empty.
    let want = expect(&[("a", Some("A")), ("d", None), ("d/f", Some("F")), ("d/sub", None)]);
    assert_eq!(durable(&m), want);
}

#[test]
fn rename_over_a_file_is_durable_only_after_the_directory_fsync() {
    let mut m = model();
    let tmp = file(&mut m, ROOT, "tmp", "new");
    m.fsync(tmp).expect("fsync");
    m.rename(ROOT, os("tmp"), ROOT, os("a"), false).expect("rename");
    assert_eq!(flat(&m.live_image())["a"], Some("new".into()));
    assert_eq!(durable(&m), expect(&[("a", Some("A")), ("d", None)]), "old name, old content");
    m.fsyncdir(ROOT).expect("fsyncdir");
    assert_eq!(durable(&m), expect(&[("a", Some("new")), ("d", None)]));
    assert_eq!(m.usage().expect("usage").0, 3, "the replaced inode is freed");
}

#[test]
fn a_durably_named_source_stays_under_its_old_name() {
    let mut m = model();
    let tmp = file(&mut m, ROOT, "tmp", "");
    m.fsyncdir(ROOT).expect("fsyncdir");
    m.write(tmp, 0, b"new").expect("write");
    m.fsync(tmp).expect("fsync");
    m.rename(ROOT, os("tmp"), ROOT, os("a"), false).expect("rename");
    let want = expect(&[("a", Some("A")), ("d", None), ("tmp", Some("new"))]);
    assert_eq!(durable(&m), want);
}

#[test]
fn unlink_comes_back_until_the_directory_fsync() {
    let mut m = model();
    let a = ino(&m, ROOT, "a");
    m.remove(ROOT, os("a"), false).expect("unlink");
    assert_eq!(m.lookup(ROOT, os("a")), Err(libc::ENOENT));
    assert_eq!(m.getattr(a).map(|at| at.nlink), Ok(0), "kept for the durable image");
    assert_eq!(durable(&m)["a"], Some("A".into()));
    m.fsyncdir(ROOT).expect("fsyncdir");
    assert_eq!(durable(&m), expect(&[("d", None)]));
    assert_eq!(m.getattr(a), Err(libc::ENOENT), "freed");
}

#[test]
fn an_open_unlinked_file_lives_until_released() {
    let mut m = model();
    let d = ino(&m, ROOT, "d");
    let f = file(&mut m, d, "f", "x");
    m.open(f, false).expect("open");
    m.remove(d, os("f"), false).expect("unlink");
    m.write(f, 1, b"y").expect("write to an unlinked open file");
    m.fsync(f).expect("fsync");
    assert_eq!(m.read(f, 0, 10), Ok(b"xy".to_vec()));
    m.release(f);
    assert_eq!(m.read(f, 0, 10), Err(libc::ENOENT));
}

#[test]
fn rmdir_keeps_a_durable_subtree_until_the_parent_fsync() {
    let mut m = model();
    let d = ino(&m, ROOT, "d");
    let f = file(&mut m, d, "f", "F");
    m.fsync(f).expect("fsync");
    m.fsyncdir(d).expect("fsyncdir");
    m.remove(d, os("f"), false).expect("unlink");
    m.remove(ROOT, os("d"), true).expect("rmdir");
    assert_eq!(durable(&m)["d/f"], Some("F".into()));
    m.fsyncdir(ROOT).expect("fsyncdir");
    assert_eq!(durable(&m), expect(&[("a", Some("A"))]));
    assert_eq!(m.usage().expect("usage").0, 2, "root and a: d and f freed");
}

#[test]
fn cross_directory_moves_are_per_directory() {
    let mut m = model();
    let d = ino(&m, ROOT, "d");
    m.rename(ROOT, os("a"), d, os("a2"), false).expect("rename");
    m.fsyncdir(d).expect("fsyncdir target only");
    let want = expect(&[("a", Some("A")), ("d", None), ("d/a2", Some("A"))]);
    assert_eq!(durable(&m), want, "in both places");

    // A directory cycle in the durable entries: each directory kept once, no endless walk.
    let x = m.create(ROOT, os("x"), true, Meta::new(0o755, 0, 0)).expect("mkdir").ino;
    m.fsyncdir(ROOT).expect("fsyncdir"); // root: d, x
    m.rename(ROOT, os("x"), d, os("x"), false).expect("x into d");
    m.fsyncdir(d).expect("fsyncdir"); // d: a2, x
    m.rename(d, os("x"), ROOT, os("x"), false).expect("x back, not synced");
    m.rename(ROOT, os("d"), x, os("d"), false).expect("d into x");
    m.fsyncdir(x).expect("fsyncdir"); // x: d
    assert_eq!(m.rename(ROOT, os("x"), d, os("x"), false), Err(libc::EINVAL), "live cycle");
    let (image, s) = m.durable_image();
    let want = expect(&[("d", None), ("d/a2", Some("A")), ("d/x", None)]);
    assert_eq!((flat(&image), s.dirs_dropped), (want, 2));
    assert_eq!(flat(&m.live_image()).keys().collect::<Vec<_>>(), ["x", "x/d", "x/d/a2"]);
}

#[test]
fn namespace_errors() {
    let mut m = model();
    let d = ino(&m, ROOT, "d");
    file(&mut m, d, "f", "");
    let meta = Meta::new(0o644, 0, 0);
    assert_eq!(m.create(ROOT, os("a"), false, meta).err(), Some(libc::EEXIST));
    assert_eq!(m.create(ROOT, os(&"n".repeat(256)), false, meta).err(), Some(libc::ENAMETOOLONG));
    assert_eq!(m.remove(ROOT, os("d"), true), Err(libc::ENOTEMPTY));
    assert_eq!(m.remove(ROOT, os("d"), false), Err(libc::EISDIR));
    assert_eq!(m.remove(ROOT, os("a"), true), Err(libc::ENOTDIR));
    assert_eq!(m.rename(ROOT, os("a"), d, os("f"), true), Err(libc::EEXIST));
    assert_eq!(m.rename(ROOT, os("a"), ROOT, os("d"), false), Err(libc::EISDIR));
    assert_eq!(m.rename(ROOT, os("d"), d, os("in"), false), Err(libc::EINVAL));
    assert_eq!(m.open(d, false), Err(libc::EISDIR));
    assert_eq!(m.open(ino(&m, ROOT, "a"), true), Err(libc::ENOTDIR));
    assert_eq!(m.fsyncdir(ino(&m, ROOT, "a")), Err(libc::ENOTDIR));
    assert_eq!(m.getattr(d).map(|a| (a.dir, a.nlink)), Ok((true, 2)));
    assert_eq!(m.getattr(ROOT).map(|a| a.nlink), Ok(3));
}

#[test]
fn a_stopped_model_fails_everything_and_the_first_stop_wins() {
    let mut m = model();
    let a = ino(&m, ROOT, "a");
    m.write(a, 0, b"Z").expect("write");
    assert_eq!(m.stop(Stop::PowerCut), Stop::PowerCut);
    assert_eq!(m.stop(Stop::Clean), Stop::PowerCut);
    assert_eq!(m.fsync(a), Err(libc::EIO));
    assert_eq!(m.getattr(a), Err(libc::EIO));
    assert_eq!(m.write(a, 0, b"Y"), Err(libc::EIO));
    assert_eq!(m.lookup(ROOT, os("a")), Err(libc::EIO));
    assert_eq!(m.create(ROOT, os("n"), false, Meta::new(0o644, 0, 0)).err(), Some(libc::EIO));
    assert_eq!(durable(&m)["a"], Some("A".into()));
    assert_eq!(flat(&m.live_image())["a"], Some("Z".into()));
}

#[test]
fn attributes_become_durable_with_the_fsync() {
    let mut m = model();
    let a = ino(&m, ROOT, "a");
    m.setattr(a, SetAttr { perm: Some(0o600), uid: Some(7), ..Default::default() }).expect("chmod");
    let meta_of = |image: Image| match image {
        Image::Dir { mut entries, .. } => entries.remove(os("a")).map(|a| *a.meta()),
        Image::File { .. } => None,
    };
    assert_eq!(meta_of(m.durable_image().0).map(|x| (x.perm, x.uid)), Some((0o644, 0)));
    m.fsync(a).expect("fsync");
    assert_eq!(meta_of(m.durable_image().0).map(|x| (x.perm, x.uid)), Some((0o600, 7)));
}
