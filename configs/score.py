"""Scoring: python -m launch.score --config.input=PATH --config.output=results.csv [--config.report=DIR]"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # An image, a folder of slices, a volume (multi-page TIFF, HDF5 file `scan.h5` or
    # `scan.h5:/exchange/data`, Zarr store `scan.zarr`); several, comma-separated (a comma
    # inside a path is written \,).
    config.input = ""
    config.output = "results.csv"
    # A folder for the report (figures and index.html); empty: no report.
    config.report = ""
    # An exported model folder or a training work directory; empty: the shipped default model.
    config.checkpoint = ""
    # Each slice is scored on its centre crop or on a grid of crops covering it (averaged).
    config.crops = "grid"
    # At most this many grid crops per side, spread over the slice (0: the whole grid, which
    # covers it). On large slices at their own pixels the grid is most of the time (121 crops
    # for 2448 px); 4 scores a 2448 px slice in about a third of the time, within 0.04 points
    # of the whole grid on average and 0.4 at most on the TomoBank previews
    # (docs/acquisition_ladder.md, "A sampled grid").
    config.most_per_side = 0
    # Score slices larger than the model's resize (255 px) on crops at their own pixels, not
    # after the area resize that halves a 512 px slice and shrinks a 2048 px one 8 times: the
    # network then sees a pixel or two of blur and the noise at the scan's pixels
    # (docs/acquisition_ladder.md, "Scoring at the slice's own pixels"). About (side / 224)^2
    # crops a slice on the grid (100 for 2048 px), so slower; scores are not comparable with
    # those of the resized path. None: as the model was trained (its model.json `own_pixels`;
    # the shipped model, round 34c: own pixels; --config.crops=center scores one crop a slice).
    config.own_pixels = config_dict.placeholder(bool)
    # Take the model's ring penalty off each slice's score (tiqa.ring_check: rings about the
    # slice centre, where a reconstruction's rotation axis is); False: the network alone.
    config.ring_check = True
    # Take the model's view penalty off each slice's score (tiqa.view_check: the comb that
    # too few views leave in the spectrum of the slice's centred square, up to 256 px, where
    # the model has a `view_check` penalty); False: without it.
    config.view_penalty = True
    # Also measure each slice's angular sampling (tiqa.view_check): the CSV gains the columns
    # view_comb (the comb's strength: about 3 to 10 for a fully sampled slice) and views (the
    # number of views, where the slice looks made from too few; else empty). One FFT of the
    # slice's centred square (up to 512 px) per slice.
    config.view_check = False
    # Take the model's centre penalty off each slice's score (tiqa.centre_check: the rotation-
    # centre offset of a 180-degree scan, estimated on the slice's centred square of up to
    # 512 px, where the model has a `centre_check` penalty, by the fit for that square's size);
    # False: without it (e.g. 360-degree or offset-axis scans, which the estimate does not
    # model).
    config.centre_penalty = True
    # Take the model's noise penalty off each slice's score (tiqa.noise_check: photon noise
    # measured on the crops the network scores, past the floor of clean scans, where the model
    # has a `noise_check` penalty); False: without it.
    config.noise_penalty = True
    # Also write each slice's estimated rotation-centre offset in px (tiqa.centre_check) as the
    # CSV column centre_offset (signed; about 0 to 0.5 for a well-centred slice), and the report
    # a line that counts the slices above 1 px (the search the penalty runs, not a second one).
    config.centre_check = False
    config.batch_size = 16  # slices per call on the accelerator
    config.normalisation = "auto"  # auto | minmax | percentile | none (see tiqa.io)
    # A TIFF page of 3 or 4 sample planes (tifffile's default for a (3|4, H, W) array): a
    # volume of 3 or 4 slices, or one colour image (colour).
    config.tiff_planes = "volume"
    # Which slices of each volume (of each input that lists more than one slice) to score: ''
    # (all), an index ('5', '-1') or a Python slice ('0:2000:10').
    config.slices = ""
    # More than one process (jax.distributed): each scores its share of the batches and
    # writes a part file beside the output; process 0 merges them after a barrier. Keys left
    # at 0 / -1 / '' come from the environment jax.distributed reads (Slurm, Open MPI, TPU).
    config.distributed = False
    config.coordinator_address = ""  # host:port of process 0, e.g. 10.0.0.1:12345
    config.num_processes = 0
    config.process_id = -1
    # Seconds to wait for the processes to connect and for the parts to show on the
    # (shared) file system.
    config.merge_timeout = 600.0
    return config
