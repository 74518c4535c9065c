"""Operations on Faster R-CNN net definitions: adapting a prototxt to a dataset's class count
(``adapt``) and SVD compression of fc6/fc7 (``compress``)."""
