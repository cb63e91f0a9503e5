// Convolution on the CPU, lowered to the one GEMM (matmul.cpp): implicit GEMMs for the
// forward pass, the weight gradient and (stride 1) the input gradient; a column buffer and
// col2im for the input gradient otherwise.
//
// For one image n and one group g (C/g input channels, K/g filters), with the column
// matrix col (C/g*R*S, P*Q) whose row (c, r, s) holds, for every output pixel (p, q), the
// input value that filter tap (c, r, s) meets there (zero in the padding):
//
//   forward          y[n, g] (K/g, P*Q)      = w[g] (K/g, C/g*R*S) @ col          (+ bias)
//   backward input   dcol (C/g*R*S, P*Q)     = w[g]^T @ dy[n, g] (K/g, P*Q);  dx[n, g] = col2im(dcol)
//   backward weight  dw[g] (K/g, C/g*R*S)   += dy[n, g] (K/g, P*Q) @ col^T
//
// With stride 1 the input gradient is itself a forward convolution, and runs as one
// (implicit_gemm_forward, the forward pass's code): dx = conv(dy, w'), dy (N, K, P, Q) as the
// images, w' (C, K/g, R, S) the filters with, within each group, the filter and channel axes
// swapped and the taps rotated 180 degrees (rotate_filters: a K*C/g*R*S copy), padding
// dilation*(R-1) - pad on each side (asymmetric padding stays asymmetric, mirrored), the
// same dilation and groups. Input pixel h meets dy rows h + pad_top - r*dilation for r < R,
// which is what that convolution's output pixel h reads. Per image and group its GEMM is
// (C/g, H*W) = w'[g] (C/g, K/g*R*S) @ col(dy): no column gradient written and read back, no
// col2im. It cannot express strides above 1 (dx's pixels would take taps in a pattern that
// depends on h mod stride) nor padding beyond dilation*(R-1) (negative padding), and it
// does not pay where H*W is well above P*Q (the extra products are with dy's padding; see
// input_gradient_as_convolution); the direct 1x1 case needs no col2im anyway. Those keep
// dcol and col2im.
//
// Forward and weight gradient: col is never written. gemm_packed_b (gemm_b_packer.h) runs
// the GEMM's driver with the image as its B operand: ImageColumns packs each NR-wide strip
// of col's (kc, NR) panel piece straight from the image (per strip and filter tap, runs of
// output pixels within one output row read consecutive pixels, stride_w apart, of one input
// row, copied for each channel), and TransposedImageColumns packs col^T's strips the same
// way, each of col's rows down one column of the strip (runs of output pixels transposed in
// SSE2 registers, pack_transposed.h). The padding is written out once per image as zeros
// around a copy of each channel (PaddedImages, R*S times smaller than col; the zeros only
// once per buffer, which a thread's blocks share), so that the copies need no border tests.
// When output rows are narrower than a strip (14-pixel rows on 16-wide strips), a strip's
// rows are each two runs; ImageColumns then copies whole rows blended under a mask
// (TwoRunSplice, copy_short.h), reading past the runs into a tail the padded copy keeps.
// This saves an im2col pass that wrote col only for the GEMM to read it back while packing.
//
// Input gradient by col2im: the GEMM writes the column gradient dcol, and col2im adds every
// entry back onto the input pixel it came from (pixels seen by several taps collect several
// terms). A 1x1 kernel with stride 1 and no padding needs neither: the input (C/g, H*W)
// already is col, and dx is dcol.
//
// Small images are processed in blocks of B images per GEMM: col then is (C/g*R*S, B*P*Q),
// image b in columns b*P*Q .. (b+1)*P*Q - 1. An 8x8 image gives a GEMM only 64 columns wide,
// too narrow to pay for packing the filters and for the GEMM's set-up; a block of 16 gives 1024.
// The GEMM's output block (K/g, B*P*Q) is then scattered to y's (N, K, P*Q) layout, and dy's
// slices are gathered into that layout for the backward passes (copies of the output's size,
// R*S*C/g times fewer operations than the GEMM). With B = 1 (images of at least
// kMinGemmColumns pixels) nothing is copied.
//
// Threads: when there are at least as many independent (block, group) units as threads,
// the units are split among the threads, each with its own buffers (padded images, column
// or output blocks), and gemm runs single-threaded inside (parallel_for does not nest).
// Otherwise the units run one after another and gemm (its packing included) and col2im
// spread each one over the threads. The weight gradient sums over the batch, so each chunk
// of blocks accumulates into its own partial dw, and the partials are added in chunk order
// (the result depends on the thread count only through rounding, and is reproducible for a
// given count).
//
// Depthwise convolutions (one input channel per group, and at most 16 filters per group in
// the forward pass, 8 in the backward ones) go to conv_depthwise.cpp instead: their GEMMs
// would have a few rows and be only R*S deep.
//
// All the other arithmetic happens in gemm: a faster gemm speeds up convolution unchanged.
#include "ranvier/conv.h"

#include <algorithm>
#include <memory>
#include <optional>

#include "block_reduce.h"
#include "conv_depthwise.h"
#include "conv_valid_range.h"
#include "copy_short.h"
#include "gemm_b_packer.h"
#include "gemm_micro_kernels.h"
#include "pack_transposed.h"
#include "parallel.h"
#include "ranvier/matmul.h"

namespace ranvier::cpu {

namespace {

// Images are grouped so that one GEMM has at least this many columns (see the top).
constexpr int64_t kMinGemmColumns = 1024;
// ... unless the block's column buffer would exceed this many elements (per thread).
constexpr int64_t kMaxBlockColumnElements = int64_t{1} << 20;

// Sizes derived from a Conv2dShape, named once.
struct Geometry {
  int64_t group_in;      // C/g: input channels per group
  int64_t group_out;     // K/g: filters per group
  int64_t out_h, out_w;  // P, Q
  int64_t out_pixels;    // P*Q
  int64_t in_pixels;     // H*W
  int64_t col_rows;      // C/g*R*S: rows of the column buffer, columns of a group's filters
  int64_t group_weight;  // K/g*C/g*R*S: elements of one group's filters
  bool direct;           // 1x1, stride 1, no padding: the input is its own column buffer
  int64_t block;         // B: images per GEMM (>= 1)
  int64_t blocks;        // ceil(N / B)

  explicit Geometry(const Conv2dShape& s)
      : group_in(s.in_channels / s.groups),
        group_out(s.out_channels / s.groups),
        out_h(s.out_height()),
        out_w(s.out_width()),
        out_pixels(out_h * out_w),
        in_pixels(s.in_height * s.in_width),
        col_rows(group_in * s.kernel_height * s.kernel_width),
        group_weight(group_out * col_rows),
        direct(s.kernel_height == 1 && s.kernel_width == 1 && s.stride_height == 1 &&
               s.stride_width == 1 && s.pad_top == 0 && s.pad_bottom == 0 && s.pad_left == 0 &&
               s.pad_right == 0),
        block(images_per_gemm(s.batch, out_pixels, col_rows)),
        blocks(s.batch == 0 ? 0 : (s.batch + block - 1) / block) {}

  // Images [first, first + count) of block `b`.
  int64_t first(int64_t b) const { return b * block; }
  int64_t count(int64_t b, int64_t batch) const { return std::min(block, batch - b * block); }

  // Per-thread buffers: the input gradient's column buffer (C/g*R*S, B*P*Q), none in the
  // direct case with B = 1; and for B > 1 the GEMM's (K/g, B*P*Q) output or gathered
  // gradient block. (The forward pass and the weight gradient add PaddedImages::size.)
  int64_t col_size() const { return direct && block == 1 ? 0 : col_rows * block * out_pixels; }
  int64_t out_block_size() const { return block == 1 ? 0 : group_out * block * out_pixels; }
  int64_t buffer_size() const { return col_size() + out_block_size(); }

 private:
  static int64_t images_per_gemm(int64_t batch, int64_t out_pixels, int64_t col_rows) {
    if (batch <= 1 || out_pixels <= 0 || out_pixels >= kMinGemmColumns) return 1;
    int64_t images = (kMinGemmColumns + out_pixels - 1) / out_pixels;
    images = std::min(images, std::max<int64_t>(1, kMaxBlockColumnElements / (col_rows * out_pixels)));
    return std::max<int64_t>(1, std::min(images, batch));
  }
};

// The input images as ImageColumns reads them: image i, channel c, row h, column w at
// data[i*image_stride + c*channel_stride + h*row_stride + w], with the convolution's padding
// stored as zeros around each channel (PaddedImages), or x itself when there is no padding.
// read_tail: up to kImagesReadTail elements past the last image may be read (PaddedImages
// allocates them; x has none), which lets ImageColumns copy whole strip rows.
constexpr int64_t kImagesReadTail = 32;  // the widest micro-tile (32 floats on AVX-512)
template <typename T>
struct ImagesView {
  const T* data;
  int64_t image_stride, channel_stride, row_stride;
  bool read_tail = false;
};

// Copies of `count` images' C/g channels (from x_group, images C*H*W apart) with their padding
// written out as zeros: (count, C/g, H + pad_top + pad_bottom, W + pad_left + pad_right) in
// `padded`. Every tap of every output pixel then reads inside the copy, so packing copies
// without testing for the border; the copy is R*S times smaller than the column matrix.
//
// The border is the same for every block of images, so a chunk that reuses its buffer writes
// it only the first time (zeros_written false: the whole copy zeroed in one fill), then only
// the images' rows. Small images made this copy a sixth of the input gradient's time on
// (64, 32, 8, 8) when each channel cost two memset and eight memmove calls of 8-10 floats.
template <typename T>
struct PaddedImages {
  static int64_t height(const Conv2dShape& s) { return s.in_height + s.pad_top + s.pad_bottom; }
  static int64_t width(const Conv2dShape& s) { return s.in_width + s.pad_left + s.pad_right; }
  static bool needed(const Conv2dShape& s) {
    return s.pad_top != 0 || s.pad_bottom != 0 || s.pad_left != 0 || s.pad_right != 0;
  }
  // Elements of the copy of `count` images and its read tail (0 when there is no padding).
  static int64_t size(const Conv2dShape& s, const Geometry& g, int64_t count) {
    return needed(s) ? count * g.group_in * height(s) * width(s) + kImagesReadTail : 0;
  }

  // zeros_written: `padded` still holds the zeros of an earlier call for at least `count`
  // images (the same chunk's buffer; a chunk's later blocks are never larger).
  static ImagesView<T> view(const Conv2dShape& s, const Geometry& g, const T* x_group,
                            int64_t count, T* padded, bool zeros_written) {
    if (!needed(s)) return {x_group, s.in_channels * g.in_pixels, g.in_pixels, s.in_width};
    const int64_t Hp = height(s), Wp = width(s), W = s.in_width;
    const int64_t channels = count * g.group_in;
    // The read tail's values are never used, but are kept defined.
    if (!zeros_written) std::fill_n(padded + channels * Hp * Wp, kImagesReadTail, T(0));
    parallel_for(channels, Hp * Wp, [&](int64_t begin, int64_t end) {
      if (!zeros_written) std::fill(padded + begin * Hp * Wp, padded + end * Hp * Wp, T(0));
      for (int64_t i = begin; i < end; ++i) {
        const int64_t image = i / g.group_in, c = i % g.group_in;
        const T* from = x_group + image * s.in_channels * g.in_pixels + c * g.in_pixels;
        T* to = padded + (i * Hp + s.pad_top) * Wp + s.pad_left;
        for (int64_t h = 0; h < s.in_height; ++h, from += W, to += Wp) {
          copy_row(from, W, to);
        }
      }
    });
    return {padded, g.group_in * Hp * Wp, Hp * Wp, Wp, true};
  }
};

// packer_for's switch covers every gemm path's micro-tile width (gemm_micro_kernels.h).
constexpr bool packable_width(int64_t nr) { return nr == 4 || nr == 8 || nr == 16 || nr == 32; }
static_assert(packable_width(gemm_kernels::portable::kNR<float>) &&
              packable_width(gemm_kernels::portable::kNR<double>));
#if RANVIER_GEMM_X86
static_assert(packable_width(gemm_kernels::avx2::kNR<float>) &&
              packable_width(gemm_kernels::avx2::kNR<double>));
static_assert(packable_width(gemm_kernels::avx512::kNR<float>) &&
              packable_width(gemm_kernels::avx512::kNR<double>));
#endif

// The BPanelPacker of a packer object with `template <int64_t NR> pack_strips(p0, j0, kc, nc,
// strip_begin, strip_end, packed)`: dispatched on the micro-tile's width, so that NR is a
// compile-time constant there (the common copies then have a fixed size).
template <typename Columns, typename T>
BPanelPacker<T> packer_for(const Columns& columns) {
  const auto pack = [](const void* self, int64_t nr, int64_t p0, int64_t j0, int64_t kc,
                       int64_t nc, int64_t strip_begin, int64_t strip_end, T* packed) {
    const Columns& c = *static_cast<const Columns*>(self);
    switch (nr) {
      case 4: return c.template pack_strips<4>(p0, j0, kc, nc, strip_begin, strip_end, packed);
      case 8: return c.template pack_strips<8>(p0, j0, kc, nc, strip_begin, strip_end, packed);
      case 16: return c.template pack_strips<16>(p0, j0, kc, nc, strip_begin, strip_end, packed);
      default: return c.template pack_strips<32>(p0, j0, kc, nc, strip_begin, strip_end, packed);
    }
  };
  return {pack, &columns};
}

// The column matrix of a block of images for one group, as gemm's B operand (implicit GEMM):
// col (C/g*R*S, count*P*Q), column j = image j / (P*Q), output pixel j % (P*Q), is never
// stored; `pack` copies the B panel's strips straight from the (padded) images.
//
// A strip's nr columns are cut into runs that stay in one output row of one image (one run
// when the strip lies inside an output row, two or more when it crosses rows). For the row
// (c, r, s) of col, a run reads consecutive input pixels (stride_w apart) of one row of the
// padded image; the channel c only moves that piece by a channel, and the tap (r, s) by
// r*dilation_h rows and s*dilation_w columns. So the runs are worked out once per strip, and
// each (run, tap) is then copied for each of the strip's channels.
template <typename T>
struct ImageColumns {
  const Conv2dShape& s;
  const Geometry& g;
  ImagesView<T> images;

  BPanelPacker<T> packer() const { return packer_for<ImageColumns, T>(*this); }

  // out + c*out_step [0:L] = src + c*src_step [0:L] for c < rows.
  template <int64_t L>
  static void copy_rows(const T* src, int64_t src_step, T* out, int64_t out_step, int64_t rows) {
    for (int64_t c = 0; c < rows; ++c, src += src_step, out += out_step) {
      // Loaded whole before it is stored: the compiler may then use vector moves (out and
      // src could overlap as far as it knows).
      T piece[L];
      for (int64_t q = 0; q < L; ++q) piece[q] = src[q];
      for (int64_t q = 0; q < L; ++q) out[q] = piece[q];
    }
  }

  template <int64_t NR>
  void pack_strips(int64_t p0, int64_t j0, int64_t kc, int64_t nc, int64_t strip_begin,
                   int64_t strip_end, T* packed) const {
    const int64_t R = s.kernel_height, S = s.kernel_width, taps = R * S, Q = g.out_w;
    const int64_t PQ = g.out_pixels, stride_w = s.stride_width;
    const int64_t row_step = taps * NR;  // from row (c, r, s) of a strip to row (c + 1, r, s)
    // Rows p0 .. p0+kc of col are (channel, tap) = divmod(row, R*S).
    const int64_t c_first = p0 / taps;
    struct Run {
      int64_t column, length;  // columns [column, column + length) of the strip
      int64_t src;             // input offset of its first pixel for channel 0, tap (0, 0)
    };
    Run runs[NR];
    for (int64_t strip = strip_begin; strip < strip_end; ++strip) {
      T* dst = packed + strip * kc * NR;
      const int64_t j_begin = j0 + strip * NR;
      const int64_t width = std::min(NR, j0 + nc - j_begin);
      int64_t run_count = 0;
      for (int64_t column = 0; column < width;) {
        const int64_t j = j_begin + column, pixel = j % PQ, p = pixel / Q, q = pixel % Q;
        const int64_t length = std::min(width - column, Q - q);
        runs[run_count++] = {column, length,
                             (j / PQ) * images.image_stride +
                                 p * s.stride_height * images.row_stride + q * stride_w};
        column += length;
      }
      static_assert(NR <= kImagesReadTail, "a whole strip row read from a run's start");
      std::optional<TwoRunSplice<T, NR>> splice;
      if (run_count == 2 && width == NR && stride_w == 1 && images.read_tail) {
        splice.emplace(runs[1].column);
      }
      for (int64_t tap = 0; tap < taps; ++tap) {
        // This tap's rows of the strip: channels c with p0 <= c*R*S + tap < p0 + kc.
        const int64_t c_begin = c_first + (c_first * taps + tap < p0 ? 1 : 0);
        const int64_t last_row = p0 + kc - 1 - tap;
        const int64_t c_end = last_row >= 0 ? last_row / taps + 1 : 0;
        if (c_begin >= c_end) continue;
        const int64_t tap_offset = (tap / S) * s.dilation_height * images.row_stride +
                                   (tap % S) * s.dilation_width;
        T* dst_tap = dst + (c_begin * taps + tap - p0) * NR;
        const T* src_tap = images.data + c_begin * images.channel_stride + tap_offset;
        const int64_t channels = c_end - c_begin;
        if (splice) {
          // Two runs filling the strip: whole rows, blended (copy_short.h). Reading NR
          // elements from the first run stays inside the copy or its read tail; reading
          // back from the second run's start stays inside the row before it.
          const T* first = src_tap + runs[0].src;
          const T* second = src_tap + runs[1].src;
          for (int64_t c = 0; c < channels; ++c) {
            (*splice)(first + c * images.channel_stride, second + c * images.channel_stride,
                      dst_tap + c * row_step);
          }
          continue;
        }
        for (int64_t i = 0; i < run_count; ++i) {
          const Run& run = runs[i];
          const T* src = src_tap + run.src;
          T* out = dst_tap + run.column;
          // Runs of a whole strip (the strip inside one output row) or of half of one
          // (output rows NR/2 wide: 8x8 images on 16-wide strips) are the common cases:
          // fixed-size copies.
          if (stride_w == 1 && run.length == NR) {
            copy_rows<NR>(src, images.channel_stride, out, row_step, channels);
          } else if (stride_w == 1 && run.length == NR / 2) {
            copy_rows<NR / 2>(src, images.channel_stride, out, row_step, channels);
          } else {
            for (int64_t c = 0; c < channels; ++c, out += row_step, src += images.channel_stride) {
              if (stride_w == 1) {
                copy_short(src, run.length, out);
              } else {
                for (int64_t q = 0; q < run.length; ++q) out[q] = src[q * stride_w];
              }
            }
          }
        }
        if (width < NR) {  // the panel's last strip: zeros past its last column
          for (int64_t c = 0; c < channels; ++c) {
            T* out = dst_tap + c * row_step;
            for (int64_t col = width; col < NR; ++col) out[col] = T(0);
          }
        }
      }
    }
  }
};

// col^T (count*P*Q, C/g*R*S) of a block of images for one group, as gemm's B operand for the
// weight gradient dw[g] = dy @ col^T (implicit GEMM, like ImageColumns): a strip is NR rows
// (c, r, s) of col, each packed down one column of the strip over the panel's kc output
// pixels p0 .. p0+kc. Those pixels are walked in runs within one output row of one image,
// and a run reads consecutive pixels (stride_w apart) of one row of the padded image.
template <typename T>
struct TransposedImageColumns {
  const Conv2dShape& s;
  const Geometry& g;
  ImagesView<T> images;

  BPanelPacker<T> packer() const { return packer_for<TransposedImageColumns, T>(*this); }

  template <int64_t NR>
  void pack_strips(int64_t p0, int64_t j0, int64_t kc, int64_t nc, int64_t strip_begin,
                   int64_t strip_end, T* packed) const {
    const int64_t S = s.kernel_width, taps = s.kernel_height * S;
    const int64_t P = g.out_h, Q = g.out_w, PQ = g.out_pixels, stride_w = s.stride_width;
    // The output pixel p0: image, row and column.
    const int64_t image0 = p0 / PQ, p_out0 = (p0 % PQ) / Q, q0 = p0 % Q;
    static_assert(NR <= kMaxPackedRows, "pack_transposed_rows takes a strip's columns");
    for (int64_t strip = strip_begin; strip < strip_end; ++strip) {
      T* dst = packed + strip * kc * NR;
      const int64_t j_begin = j0 + strip * NR;
      const int64_t width = std::min(NR, j0 + nc - j_begin);
      // Column `column` of the strip is row (c, r, s) of col: tap (r, s) of channel c, read
      // from tap_base[column] plus the offset of the output pixel's input pixel.
      const T* tap_base[NR];
      for (int64_t column = 0; column < width; ++column) {
        const int64_t j = j_begin + column, c = j / taps, tap = j % taps;
        tap_base[column] = images.data + c * images.channel_stride +
                           (tap / S) * s.dilation_height * images.row_stride +
                           (tap % S) * s.dilation_width;
      }
      // The panel's kc output pixels, in runs within one output row of one image: a run
      // reads consecutive pixels (stride_w apart) of one input row for every column.
      int64_t image = image0, p_out = p_out0, q = q0;
      for (int64_t row = 0; row < kc;) {
        const int64_t length = std::min(Q - q, kc - row);
        const int64_t offset = image * images.image_stride +
                               p_out * s.stride_height * images.row_stride + q * stride_w;
        T* out = dst + row * NR;
        if (stride_w == 1) {
          // The strip's rows [row, row + length) are the runs of its columns, transposed
          // (columns past width get zeros).
          const T* run[NR];
          for (int64_t column = 0; column < width; ++column) {
            run[column] = tap_base[column] + offset;
          }
          pack_transposed_rows(run, width, NR, length, out);
        } else {
          for (int64_t column = 0; column < width; ++column) {
            const T* src = tap_base[column] + offset;
            for (int64_t i = 0; i < length; ++i) out[i * NR + column] = src[i * stride_w];
          }
          for (int64_t i = 0; width < NR && i < length; ++i) {
            for (int64_t column = width; column < NR; ++column) out[i * NR + column] = T(0);
          }
        }
        row += length;
        q = 0;
        if (++p_out == P) {
          p_out = 0;
          ++image;
        }
      }
    }
  }
};


// dx_group (C/g, H, W) = the column buffer's (C/g*R*S, P*Q; rows `ld` apart) entries added
// back onto their input pixels (overwrites dx_group). Threads own whole channels, so no two
// write the same pixel.
template <typename T>
void col2im(const Conv2dShape& s, const Geometry& g, const T* col, int64_t ld, T* dx_group) {
  const int64_t R = s.kernel_height, S = s.kernel_width, P = g.out_h, Q = g.out_w;
  parallel_for(g.group_in, R * S * g.out_pixels, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
      T* dx_channel = dx_group + c * g.in_pixels;
      std::fill(dx_channel, dx_channel + g.in_pixels, T(0));
      for (int64_t r = 0; r < R; ++r) {
        const int64_t h_offset = r * s.dilation_height - s.pad_top;
        const ValidRange rows = valid_range(h_offset, s.stride_height, s.in_height, P);
        for (int64_t t = 0; t < S; ++t) {
          const int64_t w_offset = t * s.dilation_width - s.pad_left;
          const ValidRange cols = valid_range(w_offset, s.stride_width, s.in_width, Q);
          const T* col_row = col + ((c * R + r) * S + t) * ld;
          for (int64_t p = rows.lo; p < rows.hi; ++p) {
            const T* in = col_row + p * Q;
            T* dx_row = dx_channel + (p * s.stride_height + h_offset) * s.in_width + w_offset;
            for (int64_t q = cols.lo; q < cols.hi; ++q) dx_row[q * s.stride_width] += in[q];
          }
        }
      }
    }
  });
}

// block (K/g, count*P*Q) = one group's channels of images [first, first + count) of a
// (N, K, P*Q) tensor, image i in columns i*P*Q .. (i+1)*P*Q - 1.
template <typename T>
void gather_block(const Conv2dShape& s, const Geometry& g, const T* tensor, int64_t first, int64_t count,
                  int64_t group, T* block) {
  const int64_t ld = count * g.out_pixels;
  for (int64_t i = 0; i < count; ++i) {
    const T* image = tensor + ((first + i) * s.out_channels + group * g.group_out) * g.out_pixels;
    for (int64_t k = 0; k < g.group_out; ++k) {
      std::copy(image + k * g.out_pixels, image + (k + 1) * g.out_pixels, block + k * ld + i * g.out_pixels);
    }
  }
}

// The reverse of gather_block, adding bias[group * K/g + k] (bias may be null) on the way.
template <typename T>
void scatter_block(const Conv2dShape& s, const Geometry& g, const T* block, int64_t first, int64_t count,
                   int64_t group, const T* bias, T* tensor) {
  const int64_t ld = count * g.out_pixels;
  for (int64_t i = 0; i < count; ++i) {
    T* image = tensor + ((first + i) * s.out_channels + group * g.group_out) * g.out_pixels;
    for (int64_t k = 0; k < g.group_out; ++k) {
      const T* from = block + k * ld + i * g.out_pixels;
      T* to = image + k * g.out_pixels;
      if (bias == nullptr) {
        std::copy(from, from + g.out_pixels, to);
      } else {
        const T b = bias[group * g.group_out + k];
        for (int64_t j = 0; j < g.out_pixels; ++j) to[j] = from[j] + b;
      }
    }
  }
}

// y (N, K, P, Q) = conv(x (N, C, H, W), w (K, C/g, R, S)) + bias (K) by implicit GEMM, for
// any shape (depthwise ones included): conv2d_forward, and conv2d_backward_input on its
// transformed shape (input_gradient_as_convolution).
template <typename T>
void implicit_gemm_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y) {
  const Geometry g(s);
  const int64_t units = g.blocks * s.groups;  // (block of images, group) pairs, independent
  const int64_t flops = g.group_out * g.block * g.out_pixels * g.col_rows;
  // No column buffer: gemm packs the columns from the images (ImageColumns), or reads x
  // itself when it is the column matrix (direct, one image). Per chunk: the GEMM's output
  // block (K/g, count*P*Q) when count > 1, then the padded images.
  const int64_t padded_offset = g.out_block_size();
  for_each_chunk<T>(units, chunk_count(units), flops,
                    padded_offset + PaddedImages<T>::size(s, g, g.block),
                    [&](int64_t, int64_t begin, int64_t end, T* buffer) {
    T* out_block = buffer;
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t b = unit / s.groups, group = unit % s.groups;
      const int64_t first = g.first(b), count = g.count(b, s.batch), cols = count * g.out_pixels;
      const T* x_group = x + (first * s.in_channels + group * g.group_in) * g.in_pixels;
      const T* w_group = w + group * g.group_weight;
      T* y_group = y + (first * s.out_channels + group * g.group_out) * g.out_pixels;
      T beta = T(0);
      if (count == 1 && bias != nullptr) {
        // Start each output channel at its bias and let gemm accumulate onto it.
        for (int64_t k = 0; k < g.group_out; ++k) {
          std::fill(y_group + k * g.out_pixels, y_group + (k + 1) * g.out_pixels,
                    bias[group * g.group_out + k]);
        }
        beta = T(1);
      }
      if (g.direct && count == 1) {
        gemm<T>(false, false, g.group_out, g.out_pixels, g.col_rows, T(1), w_group, g.col_rows,
                x_group, g.out_pixels, beta, y_group, g.out_pixels);
        continue;
      }
      const ImageColumns<T> columns{
          s, g,
          PaddedImages<T>::view(s, g, x_group, count, buffer + padded_offset, unit != begin)};
      const BPanelPacker<T> packer = columns.packer();
      if (count == 1) {
        gemm_packed_b<T>(false, g.group_out, g.out_pixels, g.col_rows, T(1), w_group, g.col_rows,
                         packer, beta, y_group, g.out_pixels);
      } else {
        gemm_packed_b<T>(false, g.group_out, cols, g.col_rows, T(1), w_group, g.col_rows, packer,
                         T(0), out_block, cols);
        scatter_block(s, g, out_block, first, count, group, bias, y);
      }
    }
  });
}

// With stride 1, dx is a forward convolution of dy (see the top): the shape of that
// convolution, or false where it cannot be written as one (a stride above 1, or padding
// beyond dilation*(R-1) on a side, which would need negative padding), where the column
// gradient is the input gradient itself (direct: a 1x1 kernel, stride 1, no padding), or
// where it would cost more than col2im. The transformed convolution makes H*W*K/g*R*S
// multiply-adds per image and group where the column GEMM makes P*Q*K/g*R*S, the excess
// being products with dy's zero padding. That is nothing with 'same' padding, but 'valid'
// padding of a kernel large for its image costs much: 12x12 images, 5x5 kernel (P*Q = 64,
// 2.25 times fewer) took 2.3 times as long as col2im, 8x8 ones with 3x3 (1.8) 1.1 times.
bool input_gradient_as_convolution(const Conv2dShape& s, Conv2dShape& as_forward) {
  const int64_t reach_h = s.dilation_height * (s.kernel_height - 1);  // dilated kernel size - 1
  const int64_t reach_w = s.dilation_width * (s.kernel_width - 1);
  if (s.stride_height != 1 || s.stride_width != 1) return false;
  if (s.pad_top > reach_h || s.pad_bottom > reach_h || s.pad_left > reach_w ||
      s.pad_right > reach_w) {
    return false;
  }
  if (Geometry(s).direct) return false;
  // At most a quarter more multiply-adds than the column GEMM.
  const int64_t in_pixels = s.in_height * s.in_width, out_pixels = s.out_height() * s.out_width();
  if (4 * in_pixels > 5 * out_pixels) return false;
  // Packing: the transformed GEMM packs its B operand, K/g*R*S*H*W elements per image and
  // group, for only C/g rows of output; col2im writes and reads back C/g*R*S*P*Q. With many
  // more filters than channels the packing dominates: the DNA conv1d (C 4, K 64, length 200,
  // kernel 11) went from 1.7 to 1.3 times PyTorch's speed (forward + backward). K = 2C still
  // gains on 8x8 and 16x16 images (digits layer 2: input gradient 0.6 -> 0.85 of PyTorch's
  // speed) and about breaks even on 32x32 ones.
  const int64_t group_in = s.in_channels / s.groups, group_out = s.out_channels / s.groups;
  if (group_out * in_pixels > 2 * group_in * out_pixels) return false;
  as_forward = s;
  // Images dy (N, K, P, Q) in, dx (N, C, H, W) out, through filters (C, K/g, R, S).
  as_forward.in_channels = s.out_channels;
  as_forward.out_channels = s.in_channels;
  as_forward.in_height = s.out_height();
  as_forward.in_width = s.out_width();
  // Output pixel h of the transformed convolution meets dy rows h + pad_top - r*dilation_h
  // for r < R, as x row h met them in the forward pass; so P + pad' - reach = H.
  as_forward.pad_top = reach_h - s.pad_top;
  as_forward.pad_bottom = reach_h - s.pad_bottom;
  as_forward.pad_left = reach_w - s.pad_left;
  as_forward.pad_right = reach_w - s.pad_right;
  return true;
}

// w_rotated (C, K/g, R, S) from w (K, C/g, R, S): within each group, the filter and channel
// axes swapped and the taps rotated by 180 degrees, so that
// w_rotated[g*C/g + c, k, r, s] = w[g*K/g + k, c, R-1-r, S-1-s].
template <typename T>
void rotate_filters(const Conv2dShape& s, const Geometry& g, const T* w, T* w_rotated) {
  const int64_t taps = s.kernel_height * s.kernel_width;
  for (int64_t group = 0; group < s.groups; ++group) {
    const T* w_group = w + group * g.group_weight;
    T* rotated_group = w_rotated + group * g.group_weight;
    for (int64_t k = 0; k < g.group_out; ++k) {
      for (int64_t c = 0; c < g.group_in; ++c) {
        const T* from = w_group + (k * g.group_in + c) * taps;
        T* to = rotated_group + (c * g.group_out + k) * taps;
        for (int64_t tap = 0; tap < taps; ++tap) to[tap] = from[taps - 1 - tap];
      }
    }
  }
}

}  // namespace

// y (N, K, P, Q) = conv(x (N, C, H, W), w (K, C/g, R, S)) + bias (K); bias may be null.
template <typename T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y) {
  if (depthwise_kernels_take(s, ConvPass::Forward)) {
    return depthwise_conv2d_forward(s, x, w, bias, y);
  }
  implicit_gemm_forward(s, x, w, bias, y);
}

// dx (N, C, H, W) from dy (N, K, P, Q) and w (K, C/g, R, S): with stride 1, the forward
// implicit GEMM of dy with the rotated filters; otherwise dcol = w[g]^T @ dy[block, g], then
// col2im.
template <typename T>
void conv2d_backward_input(const Conv2dShape& s, const T* dy, const T* w, T* dx) {
  if (depthwise_kernels_take(s, ConvPass::BackwardInput)) {
    return depthwise_conv2d_backward_input(s, dy, w, dx);
  }
  const Geometry g(s);
  Conv2dShape as_forward;
  if (input_gradient_as_convolution(s, as_forward)) {
    // K*C/g*R*S elements, allocated outside any parallel region.
    const std::unique_ptr<T[]> w_rotated(new T[static_cast<size_t>(s.groups * g.group_weight)]);
    rotate_filters(s, g, w, w_rotated.get());
    return implicit_gemm_forward<T>(as_forward, dy, w_rotated.get(), nullptr, dx);
  }
  const int64_t units = g.blocks * s.groups;
  const int64_t flops = g.group_out * g.block * g.out_pixels * g.col_rows;
  for_each_chunk<T>(units, chunk_count(units), flops, g.buffer_size(),
                    [&](int64_t, int64_t begin, int64_t end, T* buffer) {
    T* col = buffer;
    T* dy_block = buffer + g.col_size();  // (K/g, count*P*Q) when count > 1
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t b = unit / s.groups, group = unit % s.groups;
      const int64_t first = g.first(b), count = g.count(b, s.batch), cols = count * g.out_pixels;
      const T* w_group = w + group * g.group_weight;
      T* dx_group = dx + (first * s.in_channels + group * g.group_in) * g.in_pixels;
      if (count > 1) {
        gather_block(s, g, dy, first, count, group, dy_block);
        gemm<T>(true, false, g.col_rows, cols, g.group_out, T(1), w_group, g.col_rows, dy_block, cols, T(0),
                col, cols);
        for (int64_t i = 0; i < count; ++i) {
          col2im(s, g, col + i * g.out_pixels, cols, dx_group + i * s.in_channels * g.in_pixels);
        }
        continue;
      }
      const T* dy_group = dy + (first * s.out_channels + group * g.group_out) * g.out_pixels;
      // In the direct case the column gradient is the input gradient itself.
      T* dcol = g.direct ? dx_group : col;
      gemm<T>(true, false, g.col_rows, g.out_pixels, g.group_out, T(1), w_group, g.col_rows, dy_group,
              g.out_pixels, T(0), dcol, g.out_pixels);
      if (!g.direct) col2im(s, g, col, g.out_pixels, dx_group);
    }
  });
}

// dw (K, C/g, R, S) = sum over blocks of dy[block, g] @ col(x[block, g])^T per group;
// dbias (K) = sum of dy.
template <typename T>
void conv2d_backward_weight(const Conv2dShape& s, const T* dy, const T* x, T* dw, T* dbias) {
  const Geometry g(s);
  const int64_t weight_size = s.out_channels * g.col_rows;
  if (dbias != nullptr) {
    // Summed in double: a float sum over N*P*Q terms would lose digits on big batches.
    parallel_for(s.out_channels, s.batch * g.out_pixels, [&](int64_t k_begin, int64_t k_end) {
      for (int64_t k = k_begin; k < k_end; ++k) {
        double sum = 0.0;
        for (int64_t n = 0; n < s.batch; ++n) {
          sum += sum_in_double(dy + (n * s.out_channels + k) * g.out_pixels, g.out_pixels);
        }
        dbias[k] = static_cast<T>(sum);
      }
    });
  }
  if (s.batch == 0) {
    std::fill(dw, dw + weight_size, T(0));
    return;
  }
  if (depthwise_kernels_take(s, ConvPass::BackwardWeight)) {
    return depthwise_conv2d_backward_weight(s, dy, x, dw);
  }

  // Chunk 0 accumulates straight into dw, chunk i > 0 into partials[i - 1]; added in order below.
  const int64_t chunks = chunk_count(g.blocks);
  // Uninitialised: each chunk's first GEMM overwrites its partial (beta 0).
  const std::unique_ptr<T[]> partials(new T[static_cast<size_t>((chunks - 1) * weight_size)]);
  const int64_t flops = s.groups * g.group_out * g.block * g.out_pixels * g.col_rows;
  // No column buffer: gemm packs col^T from the images (TransposedImageColumns), or reads x
  // itself when it is the column matrix (direct, one image). Per chunk: dy's gathered block
  // (K/g, count*P*Q) when count > 1, then the padded images.
  const int64_t padded_offset = g.out_block_size();
  for_each_chunk<T>(g.blocks, chunks, flops, padded_offset + PaddedImages<T>::size(s, g, g.block),
                    [&](int64_t chunk, int64_t begin, int64_t end, T* buffer) {
    T* dy_block = buffer;
    T* dw_chunk = chunk == 0 ? dw : partials.get() + (chunk - 1) * weight_size;
    for (int64_t b = begin; b < end; ++b) {
      const int64_t first = g.first(b), count = g.count(b, s.batch), cols = count * g.out_pixels;
      for (int64_t group = 0; group < s.groups; ++group) {
        const T* x_group = x + (first * s.in_channels + group * g.group_in) * g.in_pixels;
        const T* dy_group = dy + (first * s.out_channels + group * g.group_out) * g.out_pixels;
        if (count > 1) {
          gather_block(s, g, dy, first, count, group, dy_block);
          dy_group = dy_block;
        }
        // The chunk's first block overwrites (beta 0), later ones accumulate.
        const T beta = b == begin ? T(0) : T(1);
        T* dw_group = dw_chunk + group * g.group_weight;
        if (g.direct && count == 1) {
          gemm<T>(false, true, g.group_out, g.col_rows, cols, T(1), dy_group, cols, x_group, cols,
                  beta, dw_group, g.col_rows);
          continue;
        }
        const TransposedImageColumns<T> columns{
            s, g,
            PaddedImages<T>::view(s, g, x_group, count, buffer + padded_offset,
                                  b != begin || group != 0)};
        gemm_packed_b<T>(false, g.group_out, g.col_rows, cols, T(1), dy_group, cols,
                         columns.packer(), beta, dw_group, g.col_rows);
      }
    }
  });
  if (chunks > 1) {
    parallel_for(weight_size, chunks, [&](int64_t begin, int64_t end) {
      for (int64_t chunk = 1; chunk < chunks; ++chunk) {
        const T* partial = partials.get() + (chunk - 1) * weight_size;
        for (int64_t i = begin; i < end; ++i) dw[i] += partial[i];
      }
    });
  }
}

// conv1d: the conv2d kernels on (N, C, 1, L) images with (K, C/g, 1, S) filters, which have
// exactly the memory layout of (N, C, L) and (K, C/g, S).

// y (N, K, L_out) = conv(x (N, C, L), w (K, C/g, S)) + bias (K); bias may be null.
template <typename T>
void conv1d_forward(const Conv1dShape& s, const T* x, const T* w, const T* bias, T* y) {
  conv2d_forward<T>(s.as_conv2d(), x, w, bias, y);
}

// dx (N, C, L) from dy (N, K, L_out) and w (K, C/g, S).
template <typename T>
void conv1d_backward_input(const Conv1dShape& s, const T* dy, const T* w, T* dx) {
  conv2d_backward_input<T>(s.as_conv2d(), dy, w, dx);
}

// dw (K, C/g, S) and dbias (K, or null) from dy (N, K, L_out) and x (N, C, L).
template <typename T>
void conv1d_backward_weight(const Conv1dShape& s, const T* dy, const T* x, T* dw, T* dbias) {
  conv2d_backward_weight<T>(s.as_conv2d(), dy, x, dw, dbias);
}

#define RANVIER_INSTANTIATE_CONV(T)                                                          \
  template void conv2d_forward<T>(const Conv2dShape&, const T*, const T*, const T*, T*);     \
  template void conv2d_backward_input<T>(const Conv2dShape&, const T*, const T*, T*);        \
  template void conv2d_backward_weight<T>(const Conv2dShape&, const T*, const T*, T*, T*);   \
  template void conv1d_forward<T>(const Conv1dShape&, const T*, const T*, const T*, T*);     \
  template void conv1d_backward_input<T>(const Conv1dShape&, const T*, const T*, T*);        \
  template void conv1d_backward_weight<T>(const Conv1dShape&, const T*, const T*, T*, T*);

RANVIER_INSTANTIATE_CONV(float)
RANVIER_INSTANTIATE_CONV(double)
#undef RANVIER_INSTANTIATE_CONV

}  // namespace ranvier::cpu
