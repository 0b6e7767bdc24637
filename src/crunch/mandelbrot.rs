//! The worked example: a Mandelbrot image computed tile by tile.
//!
//! The server's [`MandelJob`] hands out tiles of the image and writes the
//! iteration counts back in place; each node's [`MandelWorker`] runs the
//! escape-time [`kernel`] over a tile. [`MandelJob::finish`] writes the
//! picture as PNG (a `.png` path) or binary PPM (anything else).

use super::{Array2D, ChunkId, Job, Rect, Tiles, Worker};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Largest tile a worker accepts, in pixels: a bound on what a bad server
/// message can make it allocate.
const MAX_TILE_PIXELS: usize = 1 << 24;

/// What every node needs to compute any tile.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Real part at the left edge.
    pub re0: f64,
    /// Imaginary part at the top edge.
    pub im0: f64,
    /// Real step per pixel.
    pub re_step: f64,
    /// Imaginary step per pixel.
    pub im_step: f64,
    /// Iterations before a point counts as inside the set.
    pub max_iter: u32,
}

impl Params {
    /// The classic view, -2..1 by -1.5..1.5, at `width` x `height`.
    pub fn classic(width: u32, height: u32, max_iter: u32) -> Self {
        Params {
            width,
            height,
            re0: -2.0,
            im0: -1.5,
            re_step: 3.0 / width.max(1) as f64,
            im_step: 3.0 / height.max(1) as f64,
            max_iter,
        }
    }
}

/// Iterations until `z -> z^2 + c` (from `z = c`) leaves the radius-2
/// disc, at most `max_iter`.
#[inline]
pub fn escape_time(c_re: f64, c_im: f64, max_iter: u32) -> u32 {
    let (mut re, mut im) = (c_re, c_im);
    let mut iter = 0;
    while re * re + im * im <= 4.0 && iter < max_iter {
        let next_re = re * re - im * im + c_re;
        im = 2.0 * re * im + c_im;
        re = next_re;
        iter += 1;
    }
    iter
}

/// Iteration counts of the pixels of `rect`, row by row.
pub fn kernel(params: &Params, rect: Rect) -> Vec<u32> {
    let mut out = Vec::with_capacity(rect.area());
    for y in rect.y..rect.y + rect.h {
        let im = params.im0 + y as f64 * params.im_step;
        for x in rect.x..rect.x + rect.w {
            let re = params.re0 + x as f64 * params.re_step;
            out.push(escape_time(re, im, params.max_iter));
        }
    }
    out
}

/// Iteration counts as little-endian bytes (a tile's wire form).
pub fn to_bytes(counts: &[u32]) -> Vec<u8> {
    counts.iter().flat_map(|c| c.to_le_bytes()).collect()
}

/// The inverse of [`to_bytes`]; `None` unless the length is a multiple of 4.
pub fn from_bytes(bytes: &[u8]) -> Option<Vec<u32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of numbers always serialize.
    bincode::serialize(value).unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    crate::net::decode_bincode(bytes).map_err(|e| e.to_string())
}

/// The server side: tiles out, iteration counts in, an image at the end.
pub struct MandelJob {
    params: Params,
    tiles: Tiles,
    image: Array2D<u32>,
    out: Option<PathBuf>,
}

impl MandelJob {
    /// A job computing `params` in `tile` x `tile` tiles, writing the
    /// picture to `out` when finished (if given).
    pub fn new(params: Params, tile: u32, out: Option<PathBuf>) -> Result<Self, String> {
        let tiles =
            Tiles::new(params.width, params.height, tile, tile).map_err(|e| e.to_string())?;
        Ok(MandelJob {
            params,
            tiles,
            image: Array2D::new(params.width, params.height, 0),
            out,
        })
    }

    /// The iteration counts computed so far.
    pub fn image(&self) -> &Array2D<u32> {
        &self.image
    }

    /// The picture as 8-bit RGB, row by row.
    pub fn rgb(&self) -> Vec<u8> {
        let max = self.params.max_iter.max(1) as f64;
        let mut out = Vec::with_capacity(self.image.as_slice().len() * 3);
        for &n in self.image.as_slice() {
            if n >= self.params.max_iter {
                out.extend_from_slice(&[0, 0, 0]);
                continue;
            }
            // Bernstein polynomials: dark blue through orange to white-ish.
            let t = (n as f64 / max).sqrt();
            let s = 1.0 - t;
            let channel = |v: f64| (v * 255.0).clamp(0.0, 255.0) as u8;
            out.push(channel(9.0 * s * t * t * t));
            out.push(channel(15.0 * s * s * t * t));
            out.push(channel(8.5 * s * s * s * t));
        }
        out
    }

    /// Writes the picture: PNG when `path` ends in `.png`, else binary PPM.
    pub fn write_image(&self, path: &std::path::Path) -> Result<(), String> {
        let (w, h) = self.image.size();
        let rgb = self.rgb();
        let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut file = std::io::BufWriter::new(file);
        let is_png = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("png"));
        let written = if is_png {
            let mut encoder = png::Encoder::new(&mut file, w, h);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            encoder
                .write_header()
                .and_then(|mut writer| writer.write_image_data(&rgb))
                .map_err(|e| e.to_string())
        } else {
            use std::io::Write;
            write!(file, "P6\n{w} {h}\n255\n")
                .and_then(|()| file.write_all(&rgb))
                .map_err(|e| e.to_string())
        };
        written
            .and_then(|()| std::io::Write::flush(&mut file).map_err(|e| e.to_string()))
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Job for MandelJob {
    fn chunks(&self) -> u64 {
        self.tiles.count()
    }

    fn initial_data(&mut self) -> Vec<u8> {
        encode(&self.params)
    }

    fn prepare(&mut self, chunk: ChunkId) -> Vec<u8> {
        // Chunk numbers come from 0..chunks(), so the tile exists.
        self.tiles
            .tile(chunk)
            .map(|r| encode(&r))
            .unwrap_or_default()
    }

    fn merge(&mut self, chunk: ChunkId, result: &[u8]) -> Result<(), String> {
        let rect = self.tiles.tile(chunk).map_err(|e| e.to_string())?;
        let counts = from_bytes(result).ok_or("result is not whole u32s")?;
        self.image.write(rect, &counts).map_err(|e| e.to_string())
    }

    fn finish(&mut self) -> Result<(), String> {
        match &self.out {
            Some(path) => self.write_image(path),
            None => Ok(()),
        }
    }
}

/// The node side: runs the [`kernel`] over each tile it is given.
#[derive(Default)]
pub struct MandelWorker {
    params: Option<Params>,
}

impl MandelWorker {
    /// A worker waiting for its initial data.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Worker for MandelWorker {
    fn init(&mut self, initial: &[u8]) -> Result<(), String> {
        self.params = Some(decode(initial)?);
        Ok(())
    }

    fn process(&mut self, chunk: &[u8]) -> Result<Vec<u8>, String> {
        let params = self.params.as_ref().ok_or("no initial data")?;
        let rect: Rect = decode(chunk)?;
        let inside = rect
            .x
            .checked_add(rect.w)
            .is_some_and(|r| r <= params.width)
            && rect
                .y
                .checked_add(rect.h)
                .is_some_and(|b| b <= params.height);
        if !inside || rect.area() > MAX_TILE_PIXELS {
            return Err(format!("tile {rect:?} outside the image"));
        }
        Ok(to_bytes(&kernel(params, rect)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_knows_inside_from_outside() {
        assert_eq!(escape_time(0.0, 0.0, 100), 100, "the origin is inside");
        assert_eq!(escape_time(-1.0, 0.0, 100), 100, "a period-2 point");
        assert_eq!(escape_time(2.0, 2.0, 100), 0, "far outside: no step");
        assert_eq!(
            escape_time(0.5, 0.0, 1000),
            4,
            "0.5, 0.75, 1.06, 1.63, 3.15: out"
        );
    }

    #[test]
    fn tiles_computed_apart_and_merged_equal_the_whole_image() {
        let params = Params::classic(50, 40, 64);
        let whole = kernel(
            &params,
            Rect {
                x: 0,
                y: 0,
                w: 50,
                h: 40,
            },
        );
        let mut job = MandelJob::new(params, 16, None).unwrap();
        let mut worker = MandelWorker::new();
        assert!(worker.process(&job.prepare(0)).is_err(), "no params yet");
        worker.init(&job.initial_data()).unwrap();
        // Backwards, to show order does not matter.
        for chunk in (0..job.chunks()).rev() {
            let result = worker.process(&job.prepare(chunk)).unwrap();
            job.merge(chunk, &result).unwrap();
        }
        assert_eq!(job.chunks(), 12);
        assert_eq!(job.image().as_slice(), &whole[..]);
        assert!(whole.contains(&64) && whole.iter().any(|&n| n < 5));
    }

    #[test]
    fn bad_results_and_bad_tiles_are_errors() {
        let params = Params::classic(32, 32, 16);
        let mut job = MandelJob::new(params, 16, None).unwrap();
        assert!(job.merge(0, &[1, 2, 3]).is_err());
        assert!(
            job.merge(0, &[0; 8]).is_err(),
            "two pixels for a 256-pixel tile"
        );
        assert!(job.merge(99, &[0; 1024]).is_err(), "no tile 99");
        let mut worker = MandelWorker::new();
        worker.init(&job.initial_data()).unwrap();
        let outside = encode(&Rect {
            x: 30,
            y: 0,
            w: 16,
            h: 16,
        });
        assert!(worker.process(&outside).is_err());
        assert!(worker.process(&[0xff; 3]).is_err());
        assert!(worker.init(&[1, 2]).is_err());
    }

    #[test]
    fn images_are_written_as_ppm_and_png() {
        let params = Params::classic(8, 6, 16);
        let dir = std::env::temp_dir().join(format!("troupe-mandel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut job = MandelJob::new(params, 4, Some(dir.join("m.ppm"))).unwrap();
        let mut worker = MandelWorker::new();
        worker.init(&job.initial_data()).unwrap();
        for chunk in 0..job.chunks() {
            let result = worker.process(&job.prepare(chunk)).unwrap();
            job.merge(chunk, &result).unwrap();
        }
        job.finish().unwrap();
        let ppm = std::fs::read(dir.join("m.ppm")).unwrap();
        assert!(ppm.starts_with(b"P6\n8 6\n255\n"));
        assert_eq!(ppm.len(), 11 + 8 * 6 * 3);
        assert_eq!(&ppm[11..], &job.rgb()[..]);
        job.write_image(&dir.join("m.png")).unwrap();
        let png = std::fs::read(dir.join("m.png")).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
