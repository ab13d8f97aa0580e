"""Sampling frames to image files: ``framebus.sample()``, the library side of ``framebus sample``.

Two ways in, one way out (:class:`~framebus.sinks.disk.ImageWriter`: atomic files, a bounded
pool of encoders):

* **A video file** is decoded here, in the caller's process, tuned for throughput: PyAV with
  FFmpeg's frame and slice threads (``thread_type="AUTO"``; files need no low-latency
  settings), frames indexed from 0 in display order (the indexes ``cv2.VideoCapture.read()``
  gives them). One pass over the packets (no decoding; it stops once ``max`` or ``end`` is
  reached) maps each packet to its frame's index (:mod:`._frame_plan`); then the decoder skips
  every frame that is neither kept nor a reference (most B-frames: a third of libx264's
  frames) and every run of frames from one fresh-start keyframe to the next without a kept
  frame (:mod:`._keyframes`), and stops after the last kept one (:mod:`.files`).
  The kept frames are exactly the frames a full decode gives (tested against OpenCV's decode
  of every frame, on H.264, HEVC, MPEG-2/4, VP9, MJPEG, open GOPs and edit lists). A file
  whose timestamps cannot index its frames (missing or repeated pts) is decoded frame by
  frame and counted. Colour conversion to BGR only for the kept frames, and that conversion,
  the encoding and the write done by the writer's pool while decoding goes on. PyAV's
  ``bgr24`` conversion gives the same bytes as OpenCV's for yuv420p H.264 (tested).
* **A named stream, or a live source** (URL, camera, test pattern, a :class:`framebus.Source`,
  which is published privately for the run) is read from the ring like any reader: one frame
  every ``interval`` seconds of capture (wall) time, through an :class:`ImageSink` that looks
  at frames without copying them and encodes only the chosen ones. On a latest-mode stream the
  ring skips for this reader as for any other: sampling never slows the capture or the other
  readers (:mod:`.sampler`).

``every`` picks frames 0, N, 2N, … by frame index; ``interval`` the first frame of each
interval of media time [kT, (k+1)T), counted from the first frame's timestamp (files), or one
frame per T seconds of capture time (streams). ``start``/``end`` select a window of that same
set (seconds of media time from the first frame; for streams, seconds since the stream was
open), so a run with a window writes a subset of the files of a run without: indexes stay
absolute and ``resume`` works across both (a frame whose file is there is not decoded).
``max`` stops after that many files kept (written, or already there with ``resume``).
"""

from __future__ import annotations

from .run import SampleOptions, SampleSummary, check_options
from .sampler import sample

__all__ = ["SampleOptions", "SampleSummary", "check_options", "sample"]
