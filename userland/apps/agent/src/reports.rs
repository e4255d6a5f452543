//! Uploading the report ring: the monitor hands out copies of its signed records after a
//! cursor (`reports` service); the agent sends them to the service in batches and moves the
//! cursor — kept in its own sealed storage — only past records the service has answered
//! for (stored now, or already had). A lost answer means the batch is sent again, which the
//! service counts as duplicates: nothing is lost and nothing is counted twice.

use crate::{Failure, http};
use septa_abi::report::Report;
use septa_abi::service::{
    DeviceId, REPORT_MAX, REPORT_UPLOAD_MAX, REPORTS_PER_UPLOAD, ReportResponse, ReportUpload,
};
use septa_syscalls::{self as sys, Error, monitor};

/// The upload and its encoding live in statics, not on the app's stack.
static UPLOAD: spin::Mutex<ReportUpload> =
    spin::Mutex::new(ReportUpload { device_id: [0; 8], reports: heapless::Vec::new() });
static BODY: spin::Mutex<[u8; REPORT_UPLOAD_MAX]> = spin::Mutex::new([0; REPORT_UPLOAD_MAX]);
static RECORD: spin::Mutex<[u8; REPORT_MAX]> = spin::Mutex::new([0; REPORT_MAX]);

const CURSOR_KEY: &[u8] = b"report-cursor";

/// The last report the service acknowledged, as (boot count, first sequence number).
fn cursor() -> Result<Option<(u32, u64)>, Failure> {
    let mut value = [0u8; 12];
    match monitor::storage_get(CURSOR_KEY, &mut value) {
        Ok(12) => {
            let boot = u32::from_le_bytes(value[..4].try_into().unwrap_or_default());
            let first = u64::from_le_bytes(value[4..].try_into().unwrap_or_default());
            Ok(Some((boot, first)))
        }
        Ok(_) | Err(Error::NotFound) => Ok(None),
        Err(e) => Err(Failure::Monitor("storage", e)),
    }
}

fn save_cursor(at: (u32, u64)) -> Result<(), Failure> {
    let mut value = [0u8; 12];
    value[..4].copy_from_slice(&at.0.to_le_bytes());
    value[4..].copy_from_slice(&at.1.to_le_bytes());
    monitor::storage_put(CURSOR_KEY, &value).map_err(|e| Failure::Monitor("storage", e))
}

/// Uploads every report after the cursor.
// Its own frame: inlined, the large locals of every step would share the stack at once.
#[inline(never)]
pub fn upload(session: &mut http::Session<'_>, device_id: &DeviceId) -> Result<(), Failure> {
    let mut after = cursor()?;
    let (mut upload, mut body, mut record) = (UPLOAD.lock(), BODY.lock(), RECORD.lock());
    upload.device_id = *device_id;
    loop {
        upload.reports.clear();
        let mut last = after;
        while !upload.reports.is_full() {
            let len = match monitor::report_read(last, &mut record[..]) {
                Ok(len) => len,
                Err(Error::NotFound) => break,
                Err(e) => return Err(Failure::Monitor("reports", e)),
            };
            let report: Report = postcard::from_bytes(&record[..len])
                .map_err(|_| Failure::Protocol("a ring record does not decode"))?;
            last = Some((report.batch.boot_count, report.batch.first));
            let copy = heapless::Vec::from_slice(&record[..len])
                .map_err(|_| Failure::Protocol("report too long"))?;
            let _ = upload.reports.push(copy); // cannot fail: not full
        }
        if upload.reports.is_empty() {
            return Ok(());
        }
        let encoded =
            postcard::to_slice(&*upload, &mut body[..]).map_err(|_| Failure::Protocol("encoding"))?;
        let answer: ReportResponse =
            http::request(session, "POST", "/device/v1/reports", None, encoded)?.message(&mut [0u8; 64])?;
        let sent = upload.reports.len();
        if answer.stored as usize + answer.duplicates as usize != sent {
            return Err(Failure::Protocol("the service did not answer for every report"));
        }
        sys::log!(
            "agent: uploaded {sent} reports ({} new, {} already there)",
            answer.stored,
            answer.duplicates
        );
        if let Some(at) = last {
            save_cursor(at)?;
        }
        after = last;
        if sent < REPORTS_PER_UPLOAD {
            return Ok(());
        }
    }
}
