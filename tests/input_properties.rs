//! Property tests of the readers of user files: the .npy reader, the preset parser and the
//! image-folder loader (and the label sort every labelled data set goes through). None may panic
//! on any input, and what they accept must be what the input says. `PROPTEST_CASES` sets the
//! cases per property (proptest's default, 256, in CI); the README gives the 10^5 command.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use noisescope::data::{DataSet, folder, npy};
use noisescope::run::RunSpec;

/// Runs `test` on `strategy`'s values; a failure (or a panic) fails with the smallest input found.
fn check<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    // Config::default() reads PROPTEST_CASES; no regression files for these runner-driven tests.
    let config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if let Err(e) = TestRunner::new(config).run(&strategy, test) {
        panic!("{e}");
    }
}

// ---- .npy ----

/// A dtype string: numpy's own, near misses and random ones.
fn descr() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "<f4", "<f8", ">f4", ">f8", "|u1", "|i1", "<i2", ">i2", "<i4", "<i8", "<u2", "<u4",
            "<u8", ">u8", "|b1", "=f8", "<c8", "<f2", "f8", "", "<", "<f", "<f16", "|O",
        ])
        .prop_map(str::to_string),
        "[<>|=x]?[a-z]?[0-9]{0,3}",
    ]
}

/// A shape tuple: small dims, empty, scalar, huge (overflowing) and malformed ones.
fn shape_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(0usize..6, 0..4).prop_map(|dims| match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!(
                "({})",
                dims.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
        prop::collection::vec(
            prop_oneof![Just(usize::MAX), Just(1usize << 40), 0usize..4],
            1..3
        )
        .prop_map(|dims| format!("({:?})", dims).replace(['[', ']'], "")),
        "\\(?[0-9, a-z-]{0,12}\\)?",
    ]
}

/// The bytes of a .npy file: a plausible header (or a damaged one) and a body of random length.
fn npy_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(1u8), Just(2u8), Just(3u8), any::<u8>()],
        descr(),
        prop::sample::select(vec!["False", "True", "Maybe", ""]),
        shape_text(),
        any::<bool>(),
        -3i64..3,
        prop::collection::vec(any::<u8>(), 0..160),
    )
        .prop_map(|(version, descr, fortran, shape, quoted, len_error, body)| {
            let header = if quoted {
                format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}\n")
            } else {
                format!("{{\"shape\": {shape}, \"descr\": \"{descr}\", \"fortran_order\": {fortran}}}")
            };
            let claimed = (header.len() as i64 + len_error).max(0) as u64;
            let mut bytes = b"\x93NUMPY".to_vec();
            bytes.extend_from_slice(&[version, 0]);
            if version == 1 {
                bytes.extend_from_slice(&(claimed as u16).to_le_bytes());
            } else {
                bytes.extend_from_slice(&(claimed as u32).to_le_bytes());
            }
            bytes.extend_from_slice(header.as_bytes());
            bytes.extend_from_slice(&body);
            bytes
        })
}

/// Two results agree: both errors, or the same array (NaN payloads compared by bits).
fn same(a: &Result<npy::NpyArray, String>, b: &Result<npy::NpyArray, String>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => {
            a.shape == b.shape
                && a.integer == b.integer
                && a.data.len() == b.data.len()
                && a.data
                    .iter()
                    .zip(&b.data)
                    .all(|(x, y)| x.to_bits() == y.to_bits())
        }
        (Err(_), Err(_)) => true,
        _ => false,
    }
}

#[test]
fn the_npy_reader_takes_any_bytes_without_panicking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a.npy");
    let bytes = prop_oneof![
        3 => npy_bytes(),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(any::<u8>(), 0..48).prop_map(|tail| {
            let mut bytes = b"\x93NUMPY".to_vec();
            bytes.extend(tail);
            bytes
        }),
    ];
    check(bytes, |bytes| {
        let parsed = npy::parse(&bytes);
        if let Ok(arr) = &parsed {
            let count = arr.shape.iter().product::<usize>();
            prop_assert_eq!(arr.data.len(), count);
        }
        // The streaming file reader agrees with the in-memory parser.
        std::fs::write(&file, &bytes).expect("write");
        let read = npy::read(&file).map_err(|e| e.to_string());
        prop_assert!(
            same(&parsed, &read),
            "parse {:?} vs read {:?}",
            parsed,
            read
        );
        if let Ok(header) = npy::read_header(&file) {
            prop_assert!(header.count.checked_mul(header.value_bytes).is_some());
        }
        Ok(())
    });
}

#[test]
fn npy_files_written_are_read_back_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("w.npy");
    let arrays = prop::collection::vec(1usize..5, 1..4).prop_flat_map(|shape| {
        let count = shape.iter().product::<usize>();
        (
            Just(shape),
            prop::collection::vec(prop::num::f64::NORMAL | prop::num::f64::ZERO, count),
            any::<bool>(),
        )
    });
    check(arrays, |(shape, data, double)| {
        npy::write(&file, &shape, &data, double).expect("write");
        let back = npy::read(&file).expect("read");
        prop_assert_eq!(&back.shape, &shape);
        let expect: Vec<f64> = if double {
            data.clone()
        } else {
            data.iter().map(|&v| v as f32 as f64).collect()
        };
        prop_assert!(
            back.data
                .iter()
                .zip(&expect)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        Ok(())
    });
}

// ---- presets ----

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            any::<f64>(),
            Just(0.0),
            Just(-1.0),
            Just(1e-13),
            Just(1e300),
            Just(f64::MAX)
        ]
        .prop_map(Value::from),
        prop::sample::select(vec![
            "toy",
            "gaussian",
            "digits",
            "npy",
            "images",
            "moons",
            "heun",
            "edm",
            "euler-a",
            "dpmpp-2m",
            "karras",
            "tangent",
            "log_uniform",
            "log_normal",
            "f32",
            "f64",
            "cpu",
            "",
        ])
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every path to a value inside `value` (the root included), as key / index steps.
fn paths(value: &Value, at: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let mut p = at.clone();
                p.push(k.clone());
                paths(v, p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let mut p = at.clone();
                p.push(i.to_string());
                paths(v, p, out);
            }
        }
        _ => {}
    }
}

fn at_path<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, step| match v {
        Value::Object(map) => map.get_mut(step),
        Value::Array(items) => step.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    })
}

/// A change to a preset: replace the value at a path, remove it, or add an unknown field.
#[derive(Clone, Debug)]
enum Edit {
    Replace(usize, Value),
    Remove(usize),
    AddUnknown(usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<usize>(), json_value()).prop_map(|(i, v)| Edit::Replace(i, v)),
        1 => any::<usize>().prop_map(Edit::Remove),
        1 => (any::<usize>(), "zz_[a-z]{1,6}").prop_map(|(i, k)| Edit::AddUnknown(i, k)),
    ]
}

/// Applies `edit` to `preset`; the unknown field's name when one was added to an object.
fn apply(preset: &mut Value, edit: &Edit) -> Option<String> {
    let mut all = Vec::new();
    paths(preset, Vec::new(), &mut all);
    let pick = |i: &usize| all[i % all.len()].clone();
    match edit {
        Edit::Replace(i, v) => {
            if let Some(slot) = at_path(preset, &pick(i)) {
                *slot = v.clone();
            }
            None
        }
        Edit::Remove(i) => {
            let path = pick(i);
            if let Some((last, parent)) = path.split_last()
                && let Some(Value::Object(map)) = at_path(preset, parent)
            {
                map.remove(last);
            }
            None
        }
        Edit::AddUnknown(i, key) => match at_path(preset, &pick(i)) {
            Some(Value::Object(map)) => {
                map.insert(key.clone(), Value::from(1));
                Some(key.clone())
            }
            _ => None,
        },
    }
}

const PRESETS: [&str; 6] = [
    include_str!("fixtures/preset-default-scene.json"),
    include_str!("fixtures/preset-digits.json"),
    include_str!("fixtures/preset-every-field.json"),
    include_str!("fixtures/preset-gaussian.json"),
    include_str!("fixtures/preset-npy-tangent.json"),
    include_str!("../docs/screenshot-preset.json"),
];

#[test]
fn the_preset_parser_takes_any_edit_of_a_real_preset_without_panicking() {
    let cases = (0..PRESETS.len(), prop::collection::vec(edit(), 1..4));
    check(cases, |(which, edits)| {
        let mut preset: Value = serde_json::from_str(PRESETS[which]).expect("fixture");
        let mut unknown = None;
        for e in &edits {
            unknown = apply(&mut preset, e);
        }
        let text = preset.to_string();
        match RunSpec::from_json(&text) {
            Ok(spec) => {
                // Accepted means valid, and it survives a round trip unchanged.
                prop_assert!(spec.validate().is_ok());
                let again = RunSpec::from_json(&spec.to_json());
                prop_assert!(again.as_ref().is_ok_and(|a| *a == spec), "{:?}", again);
                // An unknown field is never accepted silently (it may be overwritten later).
                if let Some(key) = &unknown {
                    prop_assert!(!text.contains(&format!("\"{key}\"")), "{} accepted", key);
                }
            }
            Err(e) => {
                // The single edit that added an unknown field is the error, by name.
                if edits.len() == 1
                    && let Some(key) = &unknown
                {
                    prop_assert!(e.to_string().contains(key.as_str()), "{}: {}", e, text);
                }
            }
        }
        Ok(())
    });
}

#[test]
fn the_preset_parser_takes_any_text_without_panicking() {
    let text = prop_oneof![
        "\\PC{0,80}",
        "[{}\\[\\]\":,0-9a-z_ .eE+-]{0,80}",
        json_value().prop_map(|v| v.to_string()),
    ];
    check(text, |text| {
        if let Ok(spec) = RunSpec::from_json(&text) {
            prop_assert!(spec.validate().is_ok());
        }
        Ok(())
    });
}

// ---- image folders ----

/// What a file in the folder holds.
#[derive(Clone, Debug)]
enum Content {
    Png { w: u32, h: u32, rgb: bool, seed: u8 },
    Jpeg { w: u32, h: u32, seed: u8 },
    Garbage(Vec<u8>),
}

#[derive(Clone, Debug)]
struct FilePlan {
    extension: &'static str,
    content: Content,
}

impl FilePlan {
    fn is_image(&self) -> bool {
        matches!(
            self.extension.to_ascii_lowercase().as_str(),
            "png" | "jpg" | "jpeg"
        )
    }

    /// Whether the image crate can decode it under its extension.
    fn decodes(&self) -> bool {
        let ext = self.extension.to_ascii_lowercase();
        match self.content {
            Content::Png { .. } => ext == "png",
            Content::Jpeg { .. } => ext == "jpg" || ext == "jpeg",
            Content::Garbage(_) => false,
        }
    }

    fn write(&self, path: &Path) {
        let shade =
            |seed: u8, x: u32, y: u32| seed.wrapping_mul(31).wrapping_add((x * 7 + y * 13) as u8);
        match &self.content {
            Content::Png {
                w,
                h,
                rgb: true,
                seed,
            } => image::RgbImage::from_fn(*w, *h, |x, y| {
                image::Rgb([shade(*seed, x, y), *seed, 255 - *seed])
            })
            .save_with_format(path, image::ImageFormat::Png)
            .expect("png"),
            Content::Png {
                w,
                h,
                rgb: false,
                seed,
            } => image::GrayImage::from_fn(*w, *h, |x, y| image::Luma([shade(*seed, x, y)]))
                .save_with_format(path, image::ImageFormat::Png)
                .expect("png"),
            Content::Jpeg { w, h, seed } => {
                image::RgbImage::from_fn(*w, *h, |x, y| image::Rgb([shade(*seed, x, y), 90, *seed]))
                    .save_with_format(path, image::ImageFormat::Jpeg)
                    .expect("jpeg")
            }
            Content::Garbage(bytes) => std::fs::write(path, bytes).expect("write"),
        }
    }
}

fn file_plan() -> impl Strategy<Value = FilePlan> {
    let content = prop_oneof![
        4 => (1u32..7, 1u32..7, any::<bool>(), any::<u8>())
            .prop_map(|(w, h, rgb, seed)| Content::Png { w, h, rgb, seed }),
        1 => (1u32..7, 1u32..7, any::<u8>()).prop_map(|(w, h, seed)| Content::Jpeg { w, h, seed }),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Content::Garbage),
    ];
    (
        prop::sample::select(vec![
            "png", "png", "PNG", "jpg", "jpeg", "JPG", "txt", "npy",
        ]),
        content,
    )
        .prop_map(|(extension, content)| FilePlan { extension, content })
}

#[derive(Clone, Debug)]
struct FolderPlan {
    top: Vec<FilePlan>,
    classes: Vec<Vec<FilePlan>>,
    /// An image two levels down, which the loader does not look at.
    nested: bool,
    size: u32,
    rgb: bool,
}

fn folder_plan() -> impl Strategy<Value = FolderPlan> {
    (
        prop::collection::vec(file_plan(), 0..4),
        prop::collection::vec(prop::collection::vec(file_plan(), 0..3), 0..3),
        any::<bool>(),
        prop_oneof![8 => 2u32..9, 1 => 0u32..2, 1 => 255u32..260],
        any::<bool>(),
    )
        .prop_map(|(top, classes, nested, size, rgb)| FolderPlan {
            top,
            classes,
            nested,
            size,
            rgb,
        })
}

#[test]
fn the_image_folder_loader_takes_any_folder_without_panicking() {
    let root = tempfile::tempdir().expect("tempdir");
    let counter = std::sync::atomic::AtomicUsize::new(0);
    check(folder_plan(), |plan| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = root.path().join(format!("case{n}"));
        std::fs::create_dir(&dir).expect("mkdir");
        for (i, f) in plan.top.iter().enumerate() {
            f.write(&dir.join(format!("{i}.{}", f.extension)));
        }
        for (c, files) in plan.classes.iter().enumerate() {
            let sub = dir.join(format!("class{c}"));
            std::fs::create_dir(&sub).expect("mkdir");
            for (i, f) in files.iter().enumerate() {
                f.write(&sub.join(format!("{i}.{}", f.extension)));
            }
        }
        if plan.nested {
            let deep = dir.join("class0/deeper");
            std::fs::create_dir_all(&deep).expect("mkdir");
            std::fs::write(deep.join("x.png"), b"never read").expect("write");
        }
        let result = folder::load(&dir, plan.size, plan.rgb);
        let _ = std::fs::remove_dir_all(&dir);
        // What the plan says the loader must do.
        let top: Vec<&FilePlan> = plan.top.iter().filter(|f| f.is_image()).collect();
        let classes: Vec<Vec<&FilePlan>> = plan
            .classes
            .iter()
            .map(|files| files.iter().filter(|f| f.is_image()).collect::<Vec<_>>())
            .filter(|files| !files.is_empty())
            .collect();
        let size_ok = (2..=256).contains(&plan.size);
        let mixed = !top.is_empty() && !classes.is_empty();
        let images: Vec<&FilePlan> = top
            .iter()
            .chain(classes.iter().flatten())
            .copied()
            .collect();
        let loadable =
            size_ok && !mixed && !images.is_empty() && images.iter().all(|f| f.decodes());
        match result {
            Ok(set) => {
                prop_assert!(loadable, "loaded {:?}", plan);
                let channels = if plan.rgb { 3 } else { 1 };
                prop_assert_eq!(set.n, images.len());
                prop_assert_eq!(set.dim, (plan.size * plan.size) as usize * channels);
                prop_assert!(set.values.iter().all(|v| (-1.0..=1.0).contains(v)));
                match &set.labels {
                    Some(labels) => {
                        prop_assert!(top.is_empty());
                        prop_assert_eq!(set.num_classes(), classes.len());
                        prop_assert!(labels.is_sorted());
                    }
                    None => prop_assert!(classes.is_empty()),
                }
            }
            Err(e) => {
                prop_assert!(!loadable, "refused {:?}: {}", plan, e);
                prop_assert!(!e.to_string().contains('\n'), "{:?}", e.to_string());
            }
        }
        Ok(())
    });
}

// ---- labelled data sets ----

#[test]
fn labelled_rows_sort_in_place_like_a_stable_sort() {
    let sets = (1usize..40, 1usize..4).prop_flat_map(|(n, dim)| {
        (
            Just(n),
            Just(dim),
            prop::collection::vec(0u32..5, n),
            prop::collection::vec(-5.0f64..5.0, n * dim),
        )
    });
    check(sets, |(n, dim, labels, values)| {
        let mut expect: Vec<(u32, &[f64])> =
            labels.iter().copied().zip(values.chunks(dim)).collect();
        expect.sort_by_key(|(label, _)| *label);
        let set = DataSet::new(n, dim, values.clone(), Some(labels.clone()), None).expect("valid");
        for (j, (label, row)) in expect.iter().enumerate() {
            prop_assert_eq!(set.labels.as_ref().map(|l| l[j]), Some(*label));
            prop_assert_eq!(set.row(j), *row);
        }
        Ok(())
    });
}
