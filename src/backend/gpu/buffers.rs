//! Buffers: resident uploads (a data set, a mixture), per-call scratch buffers that are reused
//! while they are big enough, and the read-back of results.

use super::device::GpuContext;
use crate::error::{Error, Result};

/// Usage of read-only kernel inputs that are written from the host.
pub(crate) const INPUT: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_DST);
/// Usage of kernel outputs and scratch that are copied to a staging buffer.
pub(crate) const OUTPUT: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC);
/// Usage of a uniform block of kernel parameters.
pub(crate) const UNIFORM: wgpu::BufferUsages =
    wgpu::BufferUsages::UNIFORM.union(wgpu::BufferUsages::COPY_DST);
/// Usage of the staging buffer results are mapped from.
pub(crate) const STAGING: wgpu::BufferUsages =
    wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);

/// Smallest buffer we create: zero-sized bindings are invalid.
const MIN_BYTES: u64 = 16;
/// Polls (each followed by up to 10 ms of waiting) before a mapping counts as lost.
const MAP_ATTEMPTS: usize = 500;

/// Bytes of a slice of 4-byte values.
pub(crate) fn bytes_of<T: bytemuck::Pod>(values: &[T]) -> &[u8] {
    bytemuck::cast_slice(values)
}

/// A buffer filled once from the host (a data set, a mixture's components), kept on the device.
/// Not mapped at creation: wgpu's mapped creation panics when memory runs out, a plain buffer
/// reports it through the caller's error scope.
pub(crate) fn upload(context: &GpuContext, label: &str, contents: &[u8]) -> wgpu::Buffer {
    let size = (contents.len() as u64).next_multiple_of(4).max(MIN_BYTES);
    let buffer = context.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: INPUT,
        mapped_at_creation: false,
    });
    if !contents.is_empty() {
        context.queue.write_buffer(&buffer, 0, contents);
    }
    buffer
}

/// Per-call buffers, one slot per role, reused while large enough and grown geometrically (up to
/// the binding limit) when not, so a run of same-sized calls allocates nothing after the first.
#[derive(Default)]
pub(crate) struct Scratch {
    slots: Vec<Option<(wgpu::BufferUsages, wgpu::Buffer)>>,
}

impl Scratch {
    /// The buffer of slot `role` with at least `bytes` bytes and the given usage.
    pub fn get(
        &mut self,
        context: &GpuContext,
        role: usize,
        bytes: u64,
        usage: wgpu::BufferUsages,
    ) -> wgpu::Buffer {
        if self.slots.len() <= role {
            self.slots.resize(role + 1, None);
        }
        let needed = bytes.next_multiple_of(4).max(MIN_BYTES);
        if let Some((have_usage, buffer)) = &self.slots[role]
            && *have_usage == usage
            && buffer.size() >= needed
        {
            return buffer.clone();
        }
        let grown = needed
            .checked_next_power_of_two()
            .unwrap_or(needed)
            .min(context.storage_limit.max(needed));
        let buffer = context.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("noisescope scratch"),
            size: grown,
            usage,
            mapped_at_creation: false,
        });
        self.slots[role] = Some((usage, buffer.clone()));
        buffer
    }

    /// A scratch buffer filled with `contents`.
    pub fn filled(
        &mut self,
        context: &GpuContext,
        role: usize,
        contents: &[u8],
        usage: wgpu::BufferUsages,
    ) -> wgpu::Buffer {
        let buffer = self.get(context, role, contents.len() as u64, usage);
        if !contents.is_empty() {
            context.queue.write_buffer(&buffer, 0, contents);
        }
        buffer
    }
}

/// Where each output lies in the staging buffer: (source buffer, byte count), packed in order.
pub(crate) struct Readback<'a> {
    pub parts: Vec<(&'a wgpu::Buffer, u64)>,
}

impl Readback<'_> {
    /// Total bytes of all parts.
    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|(_, n)| n).sum()
    }

    /// Records the copies of every part into `staging`.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder, staging: &wgpu::Buffer) {
        let mut offset = 0;
        for (buffer, bytes) in &self.parts {
            if *bytes > 0 {
                encoder.copy_buffer_to_buffer(buffer, 0, staging, offset, *bytes);
            }
            offset += bytes;
        }
    }
}

/// Submits `encoder`, waits, and returns the first `bytes` of `staging` as f32 values.
pub(crate) fn submit_and_read(
    context: &GpuContext,
    encoder: wgpu::CommandEncoder,
    staging: &wgpu::Buffer,
    bytes: u64,
) -> Result<Vec<f32>> {
    context.queue.submit([encoder.finish()]);
    if bytes == 0 {
        context.wait()?;
        return Ok(Vec::new());
    }
    let slice = staging.slice(..bytes);
    let (sender, receiver) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |result| {
        // The receiver outlives the wait below; a failed send only means nobody listens.
        let _ = sender.send(result);
    });
    // Another thread polling the same device may be the one that runs our callback, and our own
    // poll can return just before it does: keep polling briefly until the callback arrives.
    let mut mapped = None;
    for _ in 0..MAP_ATTEMPTS {
        context.wait()?;
        if let Ok(result) = receiver.recv_timeout(std::time::Duration::from_millis(10)) {
            mapped = Some(result);
            break;
        }
    }
    match mapped {
        Some(Ok(())) => {}
        Some(Err(e)) => return Err(Error::Gpu(format!("reading results back: {e}"))),
        None => {
            return Err(Error::Gpu(
                "reading results back: the mapping never completed".into(),
            ));
        }
    }
    let values = {
        let view = slice
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading results back: {e}")))?;
        view.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    staging.unmap();
    Ok(values)
}
