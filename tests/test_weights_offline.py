"""Offline with no local file: every weight loader names its URL and the option that takes a file."""

import pytest

import face_landmarks
import landmark_loss
import perceptual
from conftest import one_line_message
from dnnlib.util import UserError

LOADERS = {
    'fan': (lambda: landmark_loss.load_fan(None), landmark_loss.FAN_URL, '--fan-weights'),
    'vgg': (lambda: perceptual.PerceptualLoss(None), perceptual.VGG16_URL, '--vgg-weights'),
    'detector': (lambda: face_landmarks.load_s3fd(None), face_landmarks.S3FD_URL, '--detector-weights'),
}


@pytest.mark.parametrize('name', sorted(LOADERS))
def test_offline_without_file_names_url_and_option(name, offline_hub):
    load, url, option = LOADERS[name]
    with pytest.raises(UserError) as excinfo:
        load()
    msg = one_line_message(excinfo)
    assert url in msg
    assert option in msg
    assert offline_hub == [url]
