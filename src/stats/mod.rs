//! Stats: columnar tables built from finished flows. The only module that calls polars, and
//! only per batch of flows (never per packet), so a polars upgrade touches this file alone.
//!
//! `flows.parquet` schema (version 1): one row per flow, the columns of
//! [`crate::cli::FLOW_COLUMNS`] with these types: `id` u64; `first_ts`, `last_ts`
//! datetime[ns] (UTC); `client_port`, `server_port` u16 (u32 in Parquet); packet and byte
//! counts u64; `obfuscated` bool; the rest strings (empty when absent).
//! Built without the `polars-out` feature, the same table is written as `flows.csv`.

use std::io;
use std::path::{Path, PathBuf};

use crate::flow::FlowRecord;

/// Writes the flows table into `dir`; returns the path written.
pub fn write_flows(records: &[FlowRecord], dir: &Path) -> io::Result<PathBuf> {
    imp::write_flows(records, dir)
}

/// Writes to `path` through a temporary name, so an interrupted run leaves no half file.
fn write_atomically(path: &Path, write: impl FnOnce(&mut std::fs::File) -> io::Result<()>) -> io::Result<()> {
    let tmp = path.with_extension("partial");
    {
        let mut f = std::fs::File::create(&tmp)?;
        write(&mut f)?;
        f.sync_all()?;
    }
    std::fs::rename(tmp, path)
}

#[cfg(feature = "polars-out")]
mod imp {
    use super::*;
    use polars::prelude::*;
    use polars_io::parquet::write::ParquetWriter;

    fn to_io(e: PolarsError) -> io::Error {
        io::Error::other(e.to_string())
    }

    /// The flows as a DataFrame (schema in the module docs).
    pub fn flows_frame(records: &[FlowRecord]) -> PolarsResult<DataFrame> {
        let strings = |f: &dyn Fn(&FlowRecord) -> String| -> Vec<String> { records.iter().map(f).collect() };
        let ts = |name: &str, f: &dyn Fn(&FlowRecord) -> i64| -> PolarsResult<Column> {
            Column::new(name.into(), records.iter().map(f).collect::<Vec<i64>>())
                .cast(&DataType::Datetime(TimeUnit::Nanoseconds, None))
        };
        let columns = vec![
            Column::new("id".into(), records.iter().map(|r| r.id).collect::<Vec<u64>>()),
            ts("first_ts", &|r| r.first_ts)?,
            ts("last_ts", &|r| r.last_ts)?,
            Column::new("transport".into(), strings(&|r| r.transport.name().into_owned())),
            Column::new("client_ip".into(), strings(&|r| r.client_ip.to_string())),
            Column::new("client_port".into(), records.iter().map(|r| u32::from(r.client_port)).collect::<Vec<u32>>()),
            Column::new("server_ip".into(), strings(&|r| r.server_ip.to_string())),
            Column::new("server_port".into(), records.iter().map(|r| u32::from(r.server_port)).collect::<Vec<u32>>()),
            Column::new("packets_c2s".into(), records.iter().map(|r| r.packets[0]).collect::<Vec<u64>>()),
            Column::new("packets_s2c".into(), records.iter().map(|r| r.packets[1]).collect::<Vec<u64>>()),
            Column::new("bytes_c2s".into(), records.iter().map(|r| r.bytes[0]).collect::<Vec<u64>>()),
            Column::new("bytes_s2c".into(), records.iter().map(|r| r.bytes[1]).collect::<Vec<u64>>()),
            Column::new("outcome".into(), strings(&|r| r.outcome.name().to_string())),
            Column::new("protocol".into(), strings(&|r| r.label.protocol.to_string())),
            Column::new("application".into(), strings(&|r| r.label.application.unwrap_or("").to_string())),
            Column::new("provider".into(), strings(&|r| r.label.provider.unwrap_or("").to_string())),
            Column::new("obfuscated".into(), records.iter().map(|r| r.label.obfuscated).collect::<Vec<bool>>()),
            Column::new("family".into(), strings(&|r| r.label.family.name().to_string())),
            Column::new("confidence".into(), strings(&|r| r.label.confidence.map_or("", |c| c.name()).to_string())),
            Column::new("evidence".into(), strings(&|r| r.label.evidence_text())),
        ];
        DataFrame::new(records.len(), columns)
    }

    pub fn write_flows(records: &[FlowRecord], dir: &Path) -> io::Result<PathBuf> {
        let path = dir.join("flows.parquet");
        let mut df = flows_frame(records).map_err(to_io)?;
        write_atomically(&path, |f| ParquetWriter::new(f).finish(&mut df).map(|_| ()).map_err(to_io))?;
        Ok(path)
    }
}

#[cfg(not(feature = "polars-out"))]
mod imp {
    use super::*;
    use std::io::Write;

    pub fn write_flows(records: &[FlowRecord], dir: &Path) -> io::Result<PathBuf> {
        let path = dir.join("flows.csv");
        write_atomically(&path, |f| {
            let mut w = io::BufWriter::new(f);
            writeln!(w, "{}", crate::cli::FLOW_COLUMNS.join(","))?;
            for r in records {
                let row = crate::cli::flow_row_json(r);
                let fields: Vec<String> = crate::cli::FLOW_COLUMNS
                    .iter()
                    .map(|c| match &row[*c] {
                        serde_json::Value::String(s) if s.contains([',', '"', '\n']) => format!("\"{}\"", s.replace('"', "\"\"")),
                        serde_json::Value::String(s) => s.clone(),
                        v => v.to_string(),
                    })
                    .collect();
                writeln!(w, "{}", fields.join(","))?;
            }
            w.flush()
        })?;
        Ok(path)
    }
}

#[cfg(all(test, feature = "polars-out"))]
mod tests {
    #[test]
    fn empty_flow_table_has_every_column() {
        let df = super::imp::flows_frame(&[]).unwrap();
        assert_eq!(df.width(), crate::cli::FLOW_COLUMNS.len());
        assert_eq!(df.height(), 0);
    }
}
