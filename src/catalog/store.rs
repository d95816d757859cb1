//! SQL for images and specs. Customers see listed rows only: the `listed_only`
//! flag is part of every read.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::model::{Image, ImageFields, Spec, SpecFields};
use crate::paging::{Page, Window};

const IMAGE_COLS: &str =
    "id, name, address, description, source, listed, remark, created_at, updated_at";

fn image_row(r: &Row<'_>) -> rusqlite::Result<Image> {
    Ok(Image {
        id: r.get(0)?,
        name: r.get(1)?,
        address: r.get(2)?,
        description: r.get(3)?,
        source: r.get(4)?,
        listed: r.get(5)?,
        remark: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

/// The images (listed ones only, or all) of `window`, by id, and how many.
pub fn list_images(
    conn: &Connection,
    listed_only: bool,
    window: Window,
) -> rusqlite::Result<Page<Image>> {
    let sql = format!("SELECT {IMAGE_COLS} FROM images WHERE ?1 = 0 OR listed = 1 ORDER BY id");
    crate::paging::query(conn, &sql, &[&listed_only], window, image_row)
}

pub fn get_image(conn: &Connection, id: i64, listed_only: bool) -> rusqlite::Result<Option<Image>> {
    conn.query_row(
        &format!("SELECT {IMAGE_COLS} FROM images WHERE id = ?1 AND (?2 = 0 OR listed = 1)"),
        params![id, listed_only],
        image_row,
    )
    .optional()
}

pub fn insert_image(conn: &Connection, f: &ImageFields, now: i64) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO images (name, address, description, source, listed, remark, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        params![f.name, f.address, f.description, f.source, f.listed, f.remark, now],
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn update_image(conn: &Connection, id: i64, f: &ImageFields, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE images SET name = ?2, address = ?3, description = ?4, source = ?5, listed = ?6, remark = ?7, \
         updated_at = ?8 WHERE id = ?1",
        params![id, f.name, f.address, f.description, f.source, f.listed, f.remark, now],
    )?;
    Ok(())
}

const SPEC_COLS: &str = "id, name, gpu_model, gpu_count, cpu_cores, memory_gb, system_disk_gb, data_disk_gb, \
    price_cents, listed, remark, created_at, updated_at, lease_days";

fn spec_row(r: &Row<'_>) -> rusqlite::Result<Spec> {
    let price_cents: i64 = r.get(8)?;
    Ok(Spec {
        id: r.get(0)?,
        name: r.get(1)?,
        gpu_model: r.get(2)?,
        gpu_count: r.get(3)?,
        cpu_cores: r.get(4)?,
        memory_gb: r.get(5)?,
        system_disk_gb: r.get(6)?,
        data_disk_gb: r.get(7)?,
        price_cents,
        price_per_hour: price_cents as f64 / 100.0,
        listed: r.get(9)?,
        remark: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
        lease_days: r.get(13)?,
    })
}

/// The specs (listed ones only, or all) of `window`, by id, and how many.
pub fn list_specs(
    conn: &Connection,
    listed_only: bool,
    window: Window,
) -> rusqlite::Result<Page<Spec>> {
    let sql = format!("SELECT {SPEC_COLS} FROM specs WHERE ?1 = 0 OR listed = 1 ORDER BY id");
    crate::paging::query(conn, &sql, &[&listed_only], window, spec_row)
}

pub fn get_spec(conn: &Connection, id: i64, listed_only: bool) -> rusqlite::Result<Option<Spec>> {
    conn.query_row(
        &format!("SELECT {SPEC_COLS} FROM specs WHERE id = ?1 AND (?2 = 0 OR listed = 1)"),
        params![id, listed_only],
        spec_row,
    )
    .optional()
}

pub fn insert_spec(conn: &Connection, f: &SpecFields, now: i64) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO specs (name, gpu_model, gpu_count, cpu_cores, memory_gb, system_disk_gb, data_disk_gb, \
         price_cents, listed, remark, created_at, updated_at, lease_days) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12)",
        params![f.name, f.gpu_model, f.gpu_count, f.cpu_cores, f.memory_gb, f.system_disk_gb, f.data_disk_gb, f.price_cents, f.listed, f.remark, now, f.lease_days],
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn update_spec(conn: &Connection, id: i64, f: &SpecFields, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE specs SET name = ?2, gpu_model = ?3, gpu_count = ?4, cpu_cores = ?5, memory_gb = ?6, \
         system_disk_gb = ?7, data_disk_gb = ?8, price_cents = ?9, listed = ?10, remark = ?11, updated_at = ?12, \
         lease_days = ?13 WHERE id = ?1",
        params![id, f.name, f.gpu_model, f.gpu_count, f.cpu_cores, f.memory_gb, f.system_disk_gb, f.data_disk_gb, f.price_cents, f.listed, f.remark, now, f.lease_days],
    )?;
    Ok(())
}

/// Deletes a row of `table` (images or specs); false when it did not exist.
pub fn delete(conn: &Connection, table: Table, id: i64) -> rusqlite::Result<bool> {
    let sql = match table {
        Table::Images => "DELETE FROM images WHERE id = ?1",
        Table::Specs => "DELETE FROM specs WHERE id = ?1",
    };
    Ok(conn.execute(sql, [id])? == 1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Images,
    Specs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db;

    #[test]
    fn customers_see_listed_rows_only() {
        let conn = db::memory().unwrap();
        let mut f = ImageFields::empty();
        f.name = "cuda".into();
        f.address = "nvidia/cuda:12".into();
        let shown = insert_image(&conn, &f, 1).unwrap();
        f.listed = false;
        let hidden = insert_image(&conn, &f, 1).unwrap();
        assert_eq!(list_images(&conn, false, Window::all()).unwrap().total, 2);
        assert_eq!(
            list_images(&conn, true, Window::all())
                .unwrap()
                .items
                .iter()
                .map(|i| i.id)
                .collect::<Vec<_>>(),
            [shown]
        );
        assert!(get_image(&conn, hidden, true).unwrap().is_none());
        assert!(get_image(&conn, hidden, false).unwrap().is_some());

        let mut s = SpecFields::empty();
        s.name = "4090x2".into();
        s.gpu_model = "RTX 4090".into();
        s.price_cents = 1999;
        s.listed = false;
        let id = insert_spec(&conn, &s, 1).unwrap();
        assert_eq!(list_specs(&conn, true, Window::all()).unwrap().total, 0);
        let got = get_spec(&conn, id, false).unwrap().unwrap();
        assert_eq!(
            (got.price_cents, got.price_text(), got.price_per_hour),
            (1999, "19.99".to_string(), 19.99)
        );
        assert!(delete(&conn, Table::Specs, id).unwrap());
        assert!(!delete(&conn, Table::Specs, id).unwrap());
    }
}
