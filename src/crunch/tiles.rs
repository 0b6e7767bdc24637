//! 2D helpers: a rectangle split into tiles of a configurable size, and a
//! row-major array whose tiles are read out and written back in place.

use serde::{Deserialize, Serialize};

/// A rectangle of a 2D array: top-left corner and size, in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rect {
    /// Column of the left edge.
    pub x: u32,
    /// Row of the top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Rect {
    /// Number of elements inside.
    pub fn area(&self) -> usize {
        self.w as usize * self.h as usize
    }
}

/// A `width` x `height` array cut into tiles of `tile_w` x `tile_h`,
/// numbered row by row; tiles on the right and bottom edges are smaller
/// when the size is not a multiple of the tile size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tiles {
    width: u32,
    height: u32,
    tile_w: u32,
    tile_h: u32,
}

/// Why a tiling or a tile write was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TileError {
    /// A size or tile size of zero.
    Empty,
    /// A tile number past the last tile.
    NoSuchTile(u64),
    /// Data of the wrong length for the tile.
    WrongLength {
        /// Elements the tile holds.
        expected: usize,
        /// Elements given.
        got: usize,
    },
}

impl std::fmt::Display for TileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TileError::Empty => write!(f, "array and tile sizes must be positive"),
            TileError::NoSuchTile(t) => write!(f, "no tile {t}"),
            TileError::WrongLength { expected, got } => {
                write!(f, "tile holds {expected} elements, got {got}")
            }
        }
    }
}

impl std::error::Error for TileError {}

impl Tiles {
    /// Tiles of `tile_w` x `tile_h` over a `width` x `height` array. A
    /// tile larger than the array is clipped to it.
    pub fn new(width: u32, height: u32, tile_w: u32, tile_h: u32) -> Result<Self, TileError> {
        if width == 0 || height == 0 || tile_w == 0 || tile_h == 0 {
            return Err(TileError::Empty);
        }
        Ok(Tiles {
            width,
            height,
            tile_w: tile_w.min(width),
            tile_h: tile_h.min(height),
        })
    }

    /// Width and height of the whole array.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Tiles per row.
    pub fn across(&self) -> u32 {
        self.width.div_ceil(self.tile_w)
    }

    /// Rows of tiles.
    pub fn down(&self) -> u32 {
        self.height.div_ceil(self.tile_h)
    }

    /// Number of tiles.
    pub fn count(&self) -> u64 {
        self.across() as u64 * self.down() as u64
    }

    /// The rectangle of tile `tile`.
    pub fn tile(&self, tile: u64) -> Result<Rect, TileError> {
        if tile >= self.count() {
            return Err(TileError::NoSuchTile(tile));
        }
        let (row, col) = (
            (tile / self.across() as u64) as u32,
            (tile % self.across() as u64) as u32,
        );
        let (x, y) = (col * self.tile_w, row * self.tile_h);
        Ok(Rect {
            x,
            y,
            w: self.tile_w.min(self.width - x),
            h: self.tile_h.min(self.height - y),
        })
    }

    /// Every tile, in order.
    pub fn iter(&self) -> impl Iterator<Item = Rect> + '_ {
        (0..self.count()).filter_map(|t| self.tile(t).ok())
    }
}

/// A row-major 2D array of `T`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Array2D<T> {
    width: u32,
    height: u32,
    data: Vec<T>,
}

impl<T: Copy> Array2D<T> {
    /// A `width` x `height` array filled with `fill`.
    pub fn new(width: u32, height: u32, fill: T) -> Self {
        Array2D {
            width,
            height,
            data: vec![fill; width as usize * height as usize],
        }
    }

    /// Width and height.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The element at column `x`, row `y`.
    pub fn get(&self, x: u32, y: u32) -> Option<T> {
        if x >= self.width || y >= self.height {
            return None;
        }
        self.data
            .get(y as usize * self.width as usize + x as usize)
            .copied()
    }

    /// All elements, row by row.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// The elements of `rect`, row by row.
    pub fn read(&self, rect: Rect) -> Result<Vec<T>, TileError> {
        let mut out = Vec::with_capacity(rect.area());
        for row in self.rows(rect)? {
            out.extend_from_slice(&self.data[row]);
        }
        Ok(out)
    }

    /// Writes `values` (row by row) into `rect`, in place.
    pub fn write(&mut self, rect: Rect, values: &[T]) -> Result<(), TileError> {
        if values.len() != rect.area() {
            return Err(TileError::WrongLength {
                expected: rect.area(),
                got: values.len(),
            });
        }
        let rows = self.rows(rect)?;
        for (row, src) in rows.zip(values.chunks_exact(rect.w.max(1) as usize)) {
            self.data[row].copy_from_slice(src);
        }
        Ok(())
    }

    /// Index ranges of `rect`'s rows in `data`, after checking it fits.
    fn rows(&self, rect: Rect) -> Result<impl Iterator<Item = std::ops::Range<usize>>, TileError> {
        let fits = rect.x.checked_add(rect.w).is_some_and(|r| r <= self.width)
            && rect.y.checked_add(rect.h).is_some_and(|b| b <= self.height);
        if !fits {
            return Err(TileError::WrongLength {
                expected: self.data.len(),
                got: rect.area(),
            });
        }
        let width = self.width as usize;
        Ok((rect.y..rect.y + rect.h).map(move |y| {
            let start = y as usize * width + rect.x as usize;
            start..start + rect.w as usize
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_array_exactly_once_with_clipped_edges() {
        let tiles = Tiles::new(10, 7, 4, 3).unwrap();
        assert_eq!((tiles.across(), tiles.down(), tiles.count()), (3, 3, 9));
        assert_eq!(
            tiles.tile(2).unwrap(),
            Rect {
                x: 8,
                y: 0,
                w: 2,
                h: 3
            }
        );
        assert_eq!(
            tiles.tile(8).unwrap(),
            Rect {
                x: 8,
                y: 6,
                w: 2,
                h: 1
            }
        );
        assert_eq!(tiles.tile(9), Err(TileError::NoSuchTile(9)));
        let mut covered = Array2D::new(10, 7, 0u8);
        for rect in tiles.iter() {
            let old = covered.read(rect).unwrap();
            let bumped: Vec<u8> = old.iter().map(|v| v + 1).collect();
            covered.write(rect, &bumped).unwrap();
        }
        assert!(covered.as_slice().iter().all(|&v| v == 1));
        assert_eq!(Tiles::new(0, 5, 1, 1), Err(TileError::Empty));
        // A tile larger than the array is one tile, the whole array.
        let one = Tiles::new(5, 5, 64, 64).unwrap();
        assert_eq!(one.count(), 1);
        assert_eq!(
            one.tile(0).unwrap(),
            Rect {
                x: 0,
                y: 0,
                w: 5,
                h: 5
            }
        );
    }

    #[test]
    fn writes_land_in_place_and_bad_writes_are_refused() {
        let mut a = Array2D::new(4, 3, 0u32);
        let rect = Rect {
            x: 1,
            y: 1,
            w: 2,
            h: 2,
        };
        a.write(rect, &[1, 2, 3, 4]).unwrap();
        assert_eq!(a.as_slice(), &[0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0]);
        assert_eq!(a.read(rect).unwrap(), vec![1, 2, 3, 4]);
        assert_eq!(a.get(2, 2), Some(4));
        assert_eq!(a.get(4, 0), None);
        assert!(matches!(
            a.write(rect, &[1, 2, 3]),
            Err(TileError::WrongLength {
                expected: 4,
                got: 3
            })
        ));
        let outside = Rect {
            x: 3,
            y: 0,
            w: 2,
            h: 1,
        };
        assert!(a.write(outside, &[9, 9]).is_err());
        assert!(a
            .read(Rect {
                x: u32::MAX,
                y: 0,
                w: 2,
                h: 1
            })
            .is_err());
        assert_eq!(a.as_slice(), &[0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0]);
    }
}
