;; Normalized-variance accumulation kernel (WebAssembly + 128-bit SIMD, f64x2).
;; Source of the bytes embedded in nvKernel.ts (NV_KERNEL_WASM_BASE64). To rebuild after an edit:
;;   npx -y -p wabt@1.0.39 wat2wasm src/domain/nvKernel.wat -o /tmp/nvKernel.wasm && base64 -w0 /tmp/nvKernel.wasm
;; and paste the output into nvKernel.ts; test/domain/normalizedVariance.test.ts checks the result is
;; bit-identical to the scalar JS kernel (jsAccumulate), which performs the same operations in the
;; same order (WebAssembly never fuses multiply-adds, so float64 results match exactly).
;;
;; accumulate(ptrs, nb, D, Dp, m, tile, invs, tA, tQ, mean, m2, tvStd, tvVar, relu); pointers in bytes.
;;   ptrs:  nb i32, where sample b's activations start: m rows (transform points) of D float32,
;;          contiguous; readable up to 8 bytes past the end (the odd-D pad lane reads one value
;;          past a row).
;;   invs:  nb float64, 1 / (count of the group after adding sample b).
;;   tA, tQ: scratch, `tile` float64 each (tile even).
;;   mean, m2: m rows of Dp float64 (Dp = D rounded up to even), point-major: Welford state per (j, d).
;;   tvStd, tvVar: Dp float64: running sums over samples of the row std / variance (ddof 1).
;;   relu:  1 = accumulate max(x, 0) of every value (std::max, as ONNX Runtime's Relu: NaN and -0
;;          kept), i.e. the statistics of Relu(acts); 0 = the values as they are.
;; For each tile of d (its state stays in cache across the nb samples) and each sample b: row j = 0
;; resets the per-sample sums and updates Welford; rows j >= 1, two at a time (one pass over tA/tQ
;; for both), add y = x - x_0 (shift by the row's first value: exact 0 for identical values, and
;; well conditioned) to tA, tQ, in row order, and update Welford; then
;; var = max(0, (tQ - tA^2/m) / (m - 1)) (NaN kept) is added to tvVar and its sqrt to tvStd.
(module
  (memory (export "memory") 1)
  (func (export "accumulate")
    (param $ptrs i32) (param $nb i32) (param $D i32) (param $Dp i32) (param $m i32) (param $tile i32)
    (param $invs i32) (param $tA i32) (param $tQ i32)
    (param $mean i32) (param $m2 i32) (param $tvStd i32) (param $tvVar i32) (param $relu i32)
    (local $d0 i32) (local $dl i32) (local $b i32) (local $j i32) (local $d i32)
    (local $rowBytes i32) (local $stateRow i32)
    (local $p0 i32) (local $pa i32) (local $pb i32) (local $ps i32) (local $pm i32) (local $pq i32)
    (local $x v128) (local $xb v128) (local $x0 v128) (local $y v128) (local $yb v128)
    (local $delta v128) (local $mu v128) (local $mk v128)
    (local $vinv v128) (local $invM v128) (local $invM1 v128) (local $a v128) (local $v v128)
    (local $floor v128)
    (local.set $rowBytes (i32.shl (local.get $D) (i32.const 2)))
    (local.set $stateRow (i32.shl (local.get $Dp) (i32.const 3)))
    (local.set $invM (f64x2.splat (f64.div (f64.const 1) (f64.convert_i32_u (local.get $m)))))
    (local.set $invM1 (f64x2.splat (f64.div (f64.const 1) (f64.convert_i32_u (i32.sub (local.get $m) (i32.const 1))))))
    ;; every value read is max(x, floor) (pmax: x < floor ? floor : x, NaN and -0 kept):
    ;; floor 0 = ReLU of the values, floor -Infinity = the values themselves
    (local.set $floor (f64x2.splat (f64.const -inf)))
    (if (local.get $relu) (then (local.set $floor (f64x2.splat (f64.const 0)))))
    (local.set $d0 (i32.const 0))
    (block $doneTile (loop $lTile
      (br_if $doneTile (i32.ge_u (local.get $d0) (local.get $Dp)))
      (local.set $dl (i32.sub (local.get $Dp) (local.get $d0)))
      (if (i32.gt_u (local.get $dl) (local.get $tile)) (then (local.set $dl (local.get $tile))))
      (local.set $b (i32.const 0))
      (block $doneB (loop $lB
        (br_if $doneB (i32.ge_u (local.get $b) (local.get $nb)))
        (local.set $vinv (f64x2.splat (f64.load (i32.add (local.get $invs) (i32.shl (local.get $b) (i32.const 3))))))
        ;; row 0: reset scratch, Welford
        (local.set $p0 (i32.add (i32.load (i32.add (local.get $ptrs) (i32.shl (local.get $b) (i32.const 2))))
                                (i32.shl (local.get $d0) (i32.const 2))))
        (local.set $pa (local.get $p0))
        (local.set $ps (i32.shl (local.get $d0) (i32.const 3)))
        (local.set $pq (i32.const 0))
        (local.set $d (i32.const 0))
        (block $done0 (loop $l0
          (br_if $done0 (i32.ge_u (local.get $d) (local.get $dl)))
          (local.set $x (f64x2.pmax (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $pa))) (local.get $floor)))
          (v128.store (i32.add (local.get $tA) (local.get $pq)) (v128.const i64x2 0 0))
          (v128.store (i32.add (local.get $tQ) (local.get $pq)) (v128.const i64x2 0 0))
          (local.set $pm (i32.add (local.get $mean) (local.get $ps)))
          (local.set $mu (v128.load (local.get $pm)))
          (local.set $delta (f64x2.sub (local.get $x) (local.get $mu)))
          (local.set $mk (f64x2.add (local.get $mu) (f64x2.mul (local.get $delta) (local.get $vinv))))
          (v128.store (local.get $pm) (local.get $mk))
          (local.set $pm (i32.add (local.get $m2) (local.get $ps)))
          (v128.store (local.get $pm)
            (f64x2.add (v128.load (local.get $pm)) (f64x2.mul (local.get $delta) (f64x2.sub (local.get $x) (local.get $mk)))))
          (local.set $pa (i32.add (local.get $pa) (i32.const 8)))
          (local.set $ps (i32.add (local.get $ps) (i32.const 16)))
          (local.set $pq (i32.add (local.get $pq) (i32.const 16)))
          (local.set $d (i32.add (local.get $d) (i32.const 2)))
          (br $l0)))
        ;; rows j, j+1 (j = 1, 3, ...) in one pass: tA/tQ read and written once for both
        (local.set $j (i32.const 1))
        (block $doneJ (loop $lJ
          (br_if $doneJ (i32.ge_u (i32.add (local.get $j) (i32.const 1)) (local.get $m)))
          (local.set $pa (i32.add (local.get $p0) (i32.mul (local.get $j) (local.get $rowBytes))))
          (local.set $pb (i32.add (local.get $pa) (local.get $rowBytes)))
          (local.set $ps (i32.shl (i32.add (i32.mul (local.get $j) (local.get $Dp)) (local.get $d0)) (i32.const 3)))
          (local.set $pq (i32.const 0))
          (local.set $d (i32.const 0))
          (block $doneD (loop $lD
            (br_if $doneD (i32.ge_u (local.get $d) (local.get $dl)))
            (local.set $x0 (f64x2.pmax
              (f64x2.promote_low_f32x4 (v128.load64_zero (i32.add (local.get $p0) (i32.shr_u (local.get $pq) (i32.const 1)))))
              (local.get $floor)))
            (local.set $x (f64x2.pmax (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $pa))) (local.get $floor)))
            (local.set $xb (f64x2.pmax (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $pb))) (local.get $floor)))
            (local.set $y (f64x2.sub (local.get $x) (local.get $x0)))
            (local.set $yb (f64x2.sub (local.get $xb) (local.get $x0)))
            (local.set $pm (i32.add (local.get $tA) (local.get $pq)))
            (v128.store (local.get $pm)
              (f64x2.add (f64x2.add (v128.load (local.get $pm)) (local.get $y)) (local.get $yb)))
            (local.set $pm (i32.add (local.get $tQ) (local.get $pq)))
            (v128.store (local.get $pm)
              (f64x2.add (f64x2.add (v128.load (local.get $pm)) (f64x2.mul (local.get $y) (local.get $y)))
                         (f64x2.mul (local.get $yb) (local.get $yb))))
            ;; Welford, row j
            (local.set $pm (i32.add (local.get $mean) (local.get $ps)))
            (local.set $mu (v128.load (local.get $pm)))
            (local.set $delta (f64x2.sub (local.get $x) (local.get $mu)))
            (local.set $mk (f64x2.add (local.get $mu) (f64x2.mul (local.get $delta) (local.get $vinv))))
            (v128.store (local.get $pm) (local.get $mk))
            (local.set $pm (i32.add (local.get $m2) (local.get $ps)))
            (v128.store (local.get $pm)
              (f64x2.add (v128.load (local.get $pm)) (f64x2.mul (local.get $delta) (f64x2.sub (local.get $x) (local.get $mk)))))
            ;; Welford, row j + 1
            (local.set $pm (i32.add (i32.add (local.get $mean) (local.get $ps)) (local.get $stateRow)))
            (local.set $mu (v128.load (local.get $pm)))
            (local.set $delta (f64x2.sub (local.get $xb) (local.get $mu)))
            (local.set $mk (f64x2.add (local.get $mu) (f64x2.mul (local.get $delta) (local.get $vinv))))
            (v128.store (local.get $pm) (local.get $mk))
            (local.set $pm (i32.add (i32.add (local.get $m2) (local.get $ps)) (local.get $stateRow)))
            (v128.store (local.get $pm)
              (f64x2.add (v128.load (local.get $pm)) (f64x2.mul (local.get $delta) (f64x2.sub (local.get $xb) (local.get $mk)))))
            (local.set $pa (i32.add (local.get $pa) (i32.const 8)))
            (local.set $pb (i32.add (local.get $pb) (i32.const 8)))
            (local.set $ps (i32.add (local.get $ps) (i32.const 16)))
            (local.set $pq (i32.add (local.get $pq) (i32.const 16)))
            (local.set $d (i32.add (local.get $d) (i32.const 2)))
            (br $lD)))
          (local.set $j (i32.add (local.get $j) (i32.const 2)))
          (br $lJ)))
        ;; the last row when m - 1 is odd
        (if (i32.lt_u (local.get $j) (local.get $m)) (then
          (local.set $pa (i32.add (local.get $p0) (i32.mul (local.get $j) (local.get $rowBytes))))
          (local.set $ps (i32.shl (i32.add (i32.mul (local.get $j) (local.get $Dp)) (local.get $d0)) (i32.const 3)))
          (local.set $pq (i32.const 0))
          (local.set $d (i32.const 0))
          (block $doneR (loop $lR
            (br_if $doneR (i32.ge_u (local.get $d) (local.get $dl)))
            (local.set $x (f64x2.pmax (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $pa))) (local.get $floor)))
            (local.set $y (f64x2.sub (local.get $x)
              (f64x2.pmax
                (f64x2.promote_low_f32x4 (v128.load64_zero (i32.add (local.get $p0) (i32.shr_u (local.get $pq) (i32.const 1)))))
                (local.get $floor))))
            (local.set $pm (i32.add (local.get $tA) (local.get $pq)))
            (v128.store (local.get $pm) (f64x2.add (v128.load (local.get $pm)) (local.get $y)))
            (local.set $pm (i32.add (local.get $tQ) (local.get $pq)))
            (v128.store (local.get $pm) (f64x2.add (v128.load (local.get $pm)) (f64x2.mul (local.get $y) (local.get $y))))
            (local.set $pm (i32.add (local.get $mean) (local.get $ps)))
            (local.set $mu (v128.load (local.get $pm)))
            (local.set $delta (f64x2.sub (local.get $x) (local.get $mu)))
            (local.set $mk (f64x2.add (local.get $mu) (f64x2.mul (local.get $delta) (local.get $vinv))))
            (v128.store (local.get $pm) (local.get $mk))
            (local.set $pm (i32.add (local.get $m2) (local.get $ps)))
            (v128.store (local.get $pm)
              (f64x2.add (v128.load (local.get $pm)) (f64x2.mul (local.get $delta) (f64x2.sub (local.get $x) (local.get $mk)))))
            (local.set $pa (i32.add (local.get $pa) (i32.const 8)))
            (local.set $ps (i32.add (local.get $ps) (i32.const 16)))
            (local.set $pq (i32.add (local.get $pq) (i32.const 16)))
            (local.set $d (i32.add (local.get $d) (i32.const 2)))
            (br $lR)))))
        ;; row dispersion of this sample for the tile
        (local.set $ps (i32.shl (local.get $d0) (i32.const 3)))
        (local.set $pq (i32.const 0))
        (local.set $d (i32.const 0))
        (block $doneT (loop $lT
          (br_if $doneT (i32.ge_u (local.get $d) (local.get $dl)))
          (local.set $a (v128.load (i32.add (local.get $tA) (local.get $pq))))
          (local.set $v (f64x2.mul
            (f64x2.sub (v128.load (i32.add (local.get $tQ) (local.get $pq)))
                       (f64x2.mul (f64x2.mul (local.get $a) (local.get $a)) (local.get $invM)))
            (local.get $invM1)))
          (local.set $v (f64x2.pmax (local.get $v) (v128.const i64x2 0 0)))
          (local.set $pm (i32.add (local.get $tvVar) (local.get $ps)))
          (v128.store (local.get $pm) (f64x2.add (v128.load (local.get $pm)) (local.get $v)))
          (local.set $pm (i32.add (local.get $tvStd) (local.get $ps)))
          (v128.store (local.get $pm) (f64x2.add (v128.load (local.get $pm)) (f64x2.sqrt (local.get $v))))
          (local.set $ps (i32.add (local.get $ps) (i32.const 16)))
          (local.set $pq (i32.add (local.get $pq) (i32.const 16)))
          (local.set $d (i32.add (local.get $d) (i32.const 2)))
          (br $lT)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (br $lB)))
      (local.set $d0 (i32.add (local.get $d0) (local.get $tile)))
      (br $lTile)))
  )
)
