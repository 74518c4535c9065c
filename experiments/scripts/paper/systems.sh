# The systems that the paper reports in several tables, trained and tested once (sourced by the
# table scripts after common.sh). Each function trains what it needs (skipped when trained), tests
# it (skipped when tested) and sets RESULT, the test's output folder (per-class AP files,
# detection_results.json) and, for test sets scored by an evaluation server, SERVER_FILE; or it
# sets SKIP to the reason it cannot run here (a dataset not on disk, no selective search) and returns.
#
# The paper's conventions hold in all of them (paper-tables.md): s = 600; anchors 3 scales x 3
# ratios on VOC, 4 x 3 on COCO; RPN proposals NMS 0.7, 2000 to train Fast R-CNN, 300 at test time;
# selective search "fast" mode, about 2000 boxes; the 4-step alternating training for every RPN
# system ("shared"), stopped after step 2 for "unshared".

# ----------------------------------------------------------------- VOC 2007 trainval -> VOC 2007 test

# shared07 NET: RPN + Fast R-CNN, shared features (all 4 steps), 300 proposals at test time
shared07() {
  need_data voc_2007_trainval voc_2007_test || return 0
  altopt "$1" voc07 voc_2007_trainval voc 4
  run_test "${MODEL_KEY}_shared_voc_2007_test" "$MODEL_TEST_DEF" "$MODEL" voc_2007_test
}

# unshared07 NET: the same training stopped after step 2 (its first two steps): the stage-1 RPN's
# test-time proposals (top 6000, NMS, 300) fed to the stage-1 Fast R-CNN, two separate nets
unshared07() {
  need_data voc_2007_trainval voc_2007_test || return 0
  altopt "$1" voc07 voc_2007_trainval voc 2
  rpn_props "${MODEL_KEY}_unshared_voc_2007_test" "$RPN1" voc_2007_test --test_counts
  run_test "${MODEL_KEY}_unshared_voc_2007_test" "$MODEL_FRCN_DEF" "$MODEL" voc_2007_test --proposals "$PROPS"
}

# ss07 NET: Fast R-CNN trained and tested on selective search boxes (2000, "fast" mode)
ss07() {
  need_data voc_2007_trainval voc_2007_test || return 0
  ss_props voc_2007_trainval voc_2007_test || return 0
  frcn "$1" ss_voc07 voc_2007_trainval voc -
  run_test "${MODEL_KEY}_voc_2007_test" "$MODEL_TEST_DEF" "$MODEL" voc_2007_test
}

# ----------------------------------------------------------------- VOC 2007+2012 trainval -> VOC 2007 test

# ss0712: Fast R-CNN VGG16 on selective search, trained on 07+12
ss0712() {
  need_data "$VOC_0712" voc_2007_test || return 0
  ss_props voc_2007_trainval voc_2012_trainval voc_2007_test || return 0
  frcn VGG16 ss_voc0712 "$VOC_0712" voc -
  run_test "${MODEL_KEY}_voc_2007_test" "$MODEL_TEST_DEF" "$MODEL" voc_2007_test
}

# shared0712: RPN + Fast R-CNN VGG16 (4 steps) on 07+12
shared0712() {
  need_data "$VOC_0712" voc_2007_test || return 0
  altopt VGG16 voc0712 "$VOC_0712" voc 4
  run_test "${MODEL_KEY}_shared_voc_2007_test" "$MODEL_TEST_DEF" "$MODEL" voc_2007_test
}

# coco0712: the COCO trainval model (narrowed to VOC's classes) as the init of the 4 steps on 07+12
coco0712() {
  need_data coco_2014_train coco_2014_val "$VOC_0712" voc_2007_test || return 0
  coco_voc21
  altopt VGG16 coco_voc0712 "$VOC_0712" coco_voc 4
  run_test "${MODEL_KEY}_shared_voc_2007_test" "$MODEL_TEST_DEF" "$MODEL" voc_2007_test
}

# ----------------------------------------------------------------- -> VOC 2012 test (the evaluation server)

# voc12_test: the test of the current model on VOC 2012 test: detections packed as comp4 results
# for the server (no annotations here), SERVER_FILE
voc12_test() {
  run_test "${MODEL_KEY}_voc_2012_test" "$1" "$MODEL" voc_2012_test "${@:2}"
  SERVER_FILE="$RESULT/VOC2012_test_comp4_results.tar.gz"
}

# ss12: Fast R-CNN VGG16 on selective search, VOC 2012 trainval
ss12() {
  need_data voc_2012_trainval voc_2012_test || return 0
  ss_props voc_2012_trainval voc_2012_test || return 0
  frcn VGG16 ss_voc12 voc_2012_trainval voc -
  voc12_test "$MODEL_TEST_DEF"
}

# ss07pp12: the same on 07++12 (VOC 2007 trainval and test, VOC 2012 trainval)
ss07pp12() {
  need_data "$VOC_07PP12" voc_2012_test || return 0
  ss_props voc_2007_trainval voc_2007_test voc_2012_trainval voc_2012_test || return 0
  frcn VGG16 ss_voc07pp12 "$VOC_07PP12" voc -
  voc12_test "$MODEL_TEST_DEF"
}

# shared12 / shared07pp12 / coco07pp12: RPN + Fast R-CNN VGG16 (4 steps) on 12, on 07++12, and on
# 07++12 from the COCO model
shared12() {
  need_data voc_2012_trainval voc_2012_test || return 0
  altopt VGG16 voc12 voc_2012_trainval voc 4
  voc12_test "$MODEL_TEST_DEF"
}
shared07pp12() {
  need_data "$VOC_07PP12" voc_2012_test || return 0
  altopt VGG16 voc07pp12 "$VOC_07PP12" voc 4
  voc12_test "$MODEL_TEST_DEF"
}
coco07pp12() {
  need_data coco_2014_train coco_2014_val "$VOC_07PP12" voc_2012_test || return 0
  coco_voc21
  altopt VGG16 coco_voc07pp12 "$VOC_07PP12" coco_voc 4
  voc12_test "$MODEL_TEST_DEF"
}

# coco_novoc IMDB: the COCO trainval model narrowed to VOC's 21 classes, tested on VOC with the
# COCO test net (no VOC fine-tuning; the COCO-only classes left out of the softmax)
coco_novoc() {
  need_data coco_2014_train coco_2014_val "$1" || return 0
  coco_voc21
  run_test "${MODEL_KEY}_voc21_$1" "$MODEL_TEST_DEF" "$COCO_VOC21" "$1"
  SERVER_FILE="$RESULT/VOC2012_test_comp4_results.tar.gz"
}

# ----------------------------------------------------------------- MS COCO (Table 11)

# coco_ss: (called as `coco_ss || return 0`, where set -e does not hold: every failure is a die)
# the selective search boxes of COCO's Fast R-CNN rows. Full runs: upstream's files in
# data/coco_proposals/selective_search (the imdb's proposal method): COCO_SS_TRAIN=- and no
# COCO_SS_ARGS_<split>. Smoke runs: selective search of the VOC views the smoke COCO splits were
# exported from (the same images in the same order), given the COCO image ids
# (tools/paper_smoke_data.py rekey), as proposal files.
coco_ss() {
  COCO_SS_TRAIN=-; COCO_SS_ARGS_VAL=(); COCO_SS_ARGS_TESTDEV=()
  if [ "$SMOKE" = 0 ]; then
    [ -d "$DATA/coco_proposals/selective_search" ] && return 0
    SKIP="needs upstream's COCO selective search boxes in data/coco_proposals/selective_search"
    return 1
  fi
  local view json split out
  for split in train val testdev; do
    case "$split" in
      train) view=voc_2007_trainval; json=instances_train2014 ;;
      val) view=voc_2007_test; json=instances_val2014 ;;
      testdev) view=voc_2012_test; json=image_info_test-dev2015 ;;
    esac
    ss_props "$view" || return 1
    out="$RUNS/props/ss_coco_$split.npz"
    [ -f "$out" ] || "$PYTHON" tools/paper_smoke_data.py rekey --src "$SS_FILE" \
      --coco_json "$DATA/coco/annotations/$json.json" --out "$out" || die "coco_ss: rekeying $SS_FILE failed"
    case "$split" in
      train) COCO_SS_TRAIN="$out" ;;
      val) COCO_SS_ARGS_VAL=(--proposals "$out") ;;
      testdev) COCO_SS_ARGS_TESTDEV=(--proposals "$out") ;;
    esac
  done
}

# coco_tests VAL: the current COCO model on COCO val (when VAL is 1: mAP@.5, mAP@[.5,.95], RESULT)
# and on test-dev (detections json for the COCO server, SERVER_FILE); ARGS_VAL / ARGS_TESTDEV: the
# proposal arguments of a Fast R-CNN model
coco_tests() {
  local def="$1" val="$2"
  if [ "$val" = 1 ]; then
    run_test "${MODEL_KEY}_coco_2014_val" "$def" "$MODEL" coco_2014_val "${ARGS_VAL[@]}"
    VAL_RESULT="$RESULT"
  fi
  run_test "${MODEL_KEY}_coco_2015_test-dev" "$def" "$MODEL" coco_2015_test-dev --comp "${ARGS_TESTDEV[@]}"
  SERVER_FILE="$RESULT/detections_test-dev2015_results.json"
}
ARGS_VAL=(); ARGS_TESTDEV=()

# coco_fast_impl / coco_fast_ref2: Fast R-CNN VGG16 on COCO train's selective search boxes, with
# the paper's COCO settings (coco_paper.yml) / with [2]'s (upstream's defaults: negatives in
# [0.1, 0.5), lr 0.001, one image pair per update)
coco_fast_impl() {
  need_data coco_2014_train coco_2014_val coco_2015_test-dev || return 0
  coco_ss || return 0
  frcn VGG16 ss_coco_train coco_2014_train coco_paper "$COCO_SS_TRAIN"
  ARGS_VAL=("${COCO_SS_ARGS_VAL[@]}"); ARGS_TESTDEV=("${COCO_SS_ARGS_TESTDEV[@]}")
  coco_tests "$MODEL_TEST_DEF" 1
  ARGS_VAL=(); ARGS_TESTDEV=()
}
coco_fast_ref2() {
  need_data coco_2014_train coco_2015_test-dev || return 0
  coco_ss || return 0
  frcn VGG16 ss_coco_train_ref2 coco_2014_train coco_ref2 "$COCO_SS_TRAIN"
  ARGS_TESTDEV=("${COCO_SS_ARGS_TESTDEV[@]}")
  coco_tests "$MODEL_TEST_DEF" 0
  ARGS_TESTDEV=()
}

# coco_faster_train / coco_faster_trainval: Faster R-CNN VGG16 (4 steps, the paper's COCO
# settings) on COCO train (tested on val and test-dev) / on COCO train + val (test-dev)
coco_faster_train() {
  need_data coco_2014_train coco_2014_val coco_2015_test-dev || return 0
  altopt VGG16 coco_train coco_2014_train coco_paper 4
  coco_tests "$MODEL_TEST_DEF" 1
}
coco_faster_trainval() {
  need_data coco_2014_train coco_2014_val coco_2015_test-dev || return 0
  coco_voc21
  coco_tests "$MODEL_TEST_DEF" 0
}
