"""Files shipped with the package: Amazon Root CA 1, Twilio's API description."""
