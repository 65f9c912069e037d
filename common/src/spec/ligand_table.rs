//! How a job's ligand list is written: each pack's key and format once, then one short row
//! per ligand (`[name, pack, size, offset, sha]`), instead of an object per ligand repeating
//! its pack's 90-character key. A million-ligand spec is about half the bytes, and reading
//! it back shares one key per pack instead of allocating a million copies.
//!
//! The older form (a list of `InputRef` objects) is still read, with the same sharing.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserializer, Serializer};

use super::InputRef;
use crate::digest::Sha256;

type Row<'a> = (&'a str, u32, u64, Option<u64>, Option<Sha256>);
type OwnedRow = (String, u32, u64, Option<u64>, Option<Sha256>);

/// Each ligand with the number of its pack: consecutive ligands with the same key and
/// format share one table entry.
fn numbered(ligands: &[InputRef]) -> impl Iterator<Item = (u32, &InputRef)> {
    let mut pack = 0u32;
    let mut prev: Option<&InputRef> = None;
    ligands.iter().map(move |l| {
        if prev.is_some_and(|p| p.key != l.key || p.format != l.format) {
            pack += 1;
        }
        prev = Some(l);
        (pack, l)
    })
}

struct Packs<'a>(&'a [InputRef]);

impl serde::Serialize for Packs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        let mut written: Option<u32> = None;
        for (pack, l) in numbered(self.0) {
            if written != Some(pack) {
                seq.serialize_element(&(&*l.key, &*l.format))?;
                written = Some(pack);
            }
        }
        seq.end()
    }
}

struct Rows<'a>(&'a [InputRef]);

impl serde::Serialize for Rows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (pack, l) in numbered(self.0) {
            let row: Row = (&l.name, pack, l.size, l.offset, l.record_sha);
            seq.serialize_element(&row)?;
        }
        seq.end()
    }
}

pub fn serialize<S: Serializer>(ligands: &[InputRef], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(2))?;
    map.serialize_entry("packs", &Packs(ligands))?;
    map.serialize_entry("rows", &Rows(ligands))?;
    map.end()
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<InputRef>, D::Error> {
    d.deserialize_any(LigandsVisitor)
}

struct LigandsVisitor;

impl<'de> Visitor<'de> for LigandsVisitor {
    type Value = Vec<InputRef>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a ligand table {packs, rows} or a list of inputs")
    }

    /// The older form: one object per ligand.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out: Vec<InputRef> = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(mut l) = seq.next_element::<InputRef>()? {
            if let Some(p) = out.last() {
                if p.key == l.key {
                    l.key = Arc::clone(&p.key);
                }
                if p.format == l.format {
                    l.format = Arc::clone(&p.format);
                }
            }
            out.push(l);
        }
        Ok(out)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut packs: Option<Vec<(Arc<str>, Arc<str>)>> = None;
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*k {
                "packs" => {
                    let list: Vec<(String, String)> = map.next_value()?;
                    packs = Some(list.into_iter().map(|(k, f)| (Arc::from(k), Arc::from(f))).collect());
                }
                "rows" => {
                    let packs = packs
                        .as_deref()
                        .ok_or_else(|| de::Error::custom("ligand rows before their pack table"))?;
                    map.next_value_seed(RowsSeed { packs, out: &mut out })?;
                }
                other => return Err(de::Error::unknown_field(other, &["packs", "rows"])),
            }
        }
        Ok(out)
    }
}

/// Reads the rows straight into the ligand list (no intermediate list of rows).
struct RowsSeed<'a> {
    packs: &'a [(Arc<str>, Arc<str>)],
    out: &'a mut Vec<InputRef>,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of ligand rows [name, pack, size, offset, sha]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.out.reserve(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some((name, pack, size, offset, record_sha)) = seq.next_element::<OwnedRow>()? {
            let (key, format) = self
                .packs
                .get(pack as usize)
                .ok_or_else(|| de::Error::custom(format!("ligand '{name}' names pack {pack}, which is not in the table")))?;
            self.out.push(InputRef {
                name,
                key: Arc::clone(key),
                size,
                format: Arc::clone(format),
                offset,
                record_sha,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::InputRef;
    use crate::digest::Sha256;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Holder {
        #[serde(with = "super")]
        ligands: Vec<InputRef>,
    }

    fn lig(name: &str, key: &str, offset: Option<u64>) -> InputRef {
        InputRef {
            name: name.into(),
            key: key.into(),
            size: 7,
            format: "smi".into(),
            offset,
            record_sha: offset.map(|o| Sha256::of(&o.to_be_bytes())),
        }
    }

    #[test]
    fn the_table_round_trips_and_writes_each_pack_once() {
        let h = Holder {
            ligands: vec![
                lig("a", "orgs/o/inputs/sha256/p1", Some(0)),
                lig("b", "orgs/o/inputs/sha256/p1", Some(7)),
                lig("c", "orgs/o/inputs/sha256/p2", Some(0)),
                lig("d", "orgs/o/inputs/sha256/lone", None),
            ],
        };
        let json = serde_json::to_string(&h).expect("json");
        assert_eq!(json.matches("p1").count(), 1, "{json}");
        let back: Holder = serde_json::from_str(&json).expect("read");
        assert_eq!(back, h);
        assert!(
            std::sync::Arc::ptr_eq(&back.ligands[0].key, &back.ligands[1].key),
            "one key per pack"
        );
    }

    #[test]
    fn the_older_list_form_is_read_with_shared_keys() {
        let old = r#"{"ligands":[{"name":"a","key":"k1","size":1,"format":"smi","offset":0},{"name":"b","key":"k1","size":1,"format":"smi","offset":1},{"name":"c","key":"k2","size":1}]}"#;
        let back: Holder = serde_json::from_str(old).expect("read");
        assert_eq!(back.ligands.len(), 3);
        assert_eq!(&*back.ligands[2].key, "k2");
        assert!(back.ligands[2].is_pdbqt());
        assert!(std::sync::Arc::ptr_eq(&back.ligands[0].key, &back.ligands[1].key));
    }

    #[test]
    fn a_row_naming_a_missing_pack_is_refused() {
        let bad = r#"{"ligands":{"packs":[["k","smi"]],"rows":[["a",3,1,0,null]]}}"#;
        let e = serde_json::from_str::<Holder>(bad).expect_err("pack 3");
        assert!(e.to_string().contains("pack 3"), "{e}");
        let bad = r#"{"ligands":{"rows":[["a",0,1,0,null]],"packs":[]}}"#;
        assert!(serde_json::from_str::<Holder>(bad).is_err());
    }
}
